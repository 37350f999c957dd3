// What the CUDA backend's make_data_transport (mics/backends/transport.hpp) decides with.
#pragma once
#include <mpi.h>

namespace mics::backends::cuda {

// Whether two ranks of `world` use the same GPU (`device` is this rank's), compared by GPU UUID among
// the ranks of each machine: the same answer on every rank. NCCL cannot hold two ranks of one
// communicator on one GPU. UUIDs, not counts: under Slurm's --gpus-per-task each rank sees one device
// (its own), and a launcher that sets no local rank puts every rank on device 0. Collective over `world`;
// a CUDA failure reading this rank's UUID throws on every rank (comm::agree).
bool ranks_share_gpus(int device, MPI_Comm world);

}  // namespace mics::backends::cuda
