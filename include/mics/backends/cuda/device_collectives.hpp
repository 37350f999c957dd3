// Which collectives move a backend's memory.
#pragma once
#include <mpi.h>

#include <memory>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/topology/topology.hpp"

namespace mics::backends::cuda {

// Whether two ranks of `world` use the same GPU (`device` is this rank's), compared by GPU UUID among
// the ranks of each machine: the same answer on every rank. NCCL cannot hold two ranks of one
// communicator on one GPU. UUIDs, not counts: under Slurm's --gpus-per-task each rank sees one device
// (its own), and a launcher that sets no local rank puts every rank on device 0. Collective over `world`.
bool ranks_share_gpus(int device, MPI_Comm world);

// nullptr for a host-memory backend (use `host` as is). For the CUDA backend: NcclCollectives when every
// rank has a GPU of its own, HostStagedCollectives when ranks share GPUs (ranks_share_gpus). The
// environment variable MICS_CUDA_COLLECTIVES = auto | nccl | staged overrides the choice; it must be the
// same on every rank, and nccl on shared GPUs is refused (mics::Error).
// Collective over topology.world(); `host` must outlive the result.
std::unique_ptr<comm::Collectives> make_device_collectives(Backend& backend, topology::Topology& topology,
                                                           comm::Collectives& host);

}  // namespace mics::backends::cuda
