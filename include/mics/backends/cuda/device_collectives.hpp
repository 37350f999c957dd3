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

// Which collectives move device memory: none for a host-memory backend (the host collectives as they
// are); for the CUDA backend NCCL when every rank has a GPU of its own, host-staged MPI when ranks share
// GPUs (ranks_share_gpus). The environment variable MICS_CUDA_COLLECTIVES = auto | nccl | staged overrides
// the choice. Collective over topology.world(): every rank gets the same answer, and a bad setting (an
// unknown value, values that differ between ranks, nccl on shared GPUs) throws the same mics::Error on
// every rank, so the caller can end the job as an error all ranks saw.
enum class DeviceCollectives { none, nccl, staged };
DeviceCollectives choose_device_collectives(Backend& backend, topology::Topology& topology);

// The collectives `choice` names (nullptr for none); NCCL communicators are made here, collectively.
// `host` must outlive the result.
std::unique_ptr<comm::Collectives> make_device_collectives(DeviceCollectives choice, Backend& backend,
                                                           topology::Topology& topology, comm::Collectives& host);

}  // namespace mics::backends::cuda
