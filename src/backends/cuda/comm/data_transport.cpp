// make_data_transport for builds with the CUDA backend (the other builds: src/backends/transport.cpp).
#include "mics/backends/cuda/data_transport.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/host_staged_transport.hpp"
#include "mics/backends/cuda/nccl_transport.hpp"
#include "mics/backends/transport.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/log/log.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"

namespace mics::backends {

namespace cuda {

namespace {

using Uuid = std::array<char, sizeof(cudaUUID_t)>;

Uuid uuid_of(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  Uuid uuid{};
  std::copy(std::begin(prop.uuid.bytes), std::end(prop.uuid.bytes), uuid.begin());
  return uuid;
}

// The collective half of ranks_share_gpus: nothing in it fails on one rank alone but an MPI error.
bool share_uuids(Uuid mine, MPI_Comm world) {
  // A GPU is on one machine: comparing inside each machine is enough.
  MPI_Comm local = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int local_ranks = 1;
  MICS_MPI_CHECK(MPI_Comm_size(local, &local_ranks));
  std::vector<Uuid> all(static_cast<std::size_t>(local_ranks));
  MICS_MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, all.data(),
                               static_cast<int>(mine.size()), MPI_BYTE, local));
  MICS_MPI_CHECK(MPI_Comm_free(&local));
  std::sort(all.begin(), all.end());
  int shares = std::adjacent_find(all.begin(), all.end()) != all.end() ? 1 : 0;
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &shares, 1, MPI_INT, MPI_MAX, world));
  return shares != 0;
}

// Read by earlier versions: refused rather than silently ignored.
void refuse_old_environment() {
  if (std::getenv("MICS_CUDA_COLLECTIVES") != nullptr) {
    throw InputError(
        "MICS_CUDA_COLLECTIVES is no longer read: set backend.collectives = auto | nccl | staged in the deck instead");
  }
}

}  // namespace

bool ranks_share_gpus(int device, MPI_Comm world) {
  Uuid mine{};
  comm::agree(world, [&] { mine = uuid_of(device); });
  return share_uuids(mine, world);
}

}  // namespace cuda

std::unique_ptr<comm::Transport> make_data_transport(Backend& backend, const topology::Topology& topology,
                                                     comm::MpiTransport& mpi, config::DeviceCollectives choice,
                                                     const LastResort& on_unrecoverable) {
  const MPI_Comm world = topology.world().handle();
  // Everything that can fail on one rank alone first, agreed before any other collective: a rank that
  // fails here leaves none waiting.
  comm::agree(world, cuda::refuse_old_environment);
  auto* gpu = dynamic_cast<cuda::CudaBackend*>(&backend);
  if (gpu == nullptr) {  // the deck's backend.device and backend.collectives: the same on every rank
    if (choice != config::DeviceCollectives::automatic) {
      throw InputError("backend.collectives = " + std::string(choice == config::DeviceCollectives::nccl ? "nccl" : "staged") +
                           " needs backend.device = cuda (the " + std::string(backend.name()) +
                           " backend's memory moves over MPI)",
                       ErrorScope::all_ranks);
    }
    return nullptr;
  }
  const bool shared = cuda::ranks_share_gpus(gpu->device(), world);
  if (choice == config::DeviceCollectives::nccl && shared) {
    throw InputError("backend.collectives = nccl, but ranks share a GPU: NCCL needs one GPU per rank",
                     ErrorScope::all_ranks);
  }
  const bool automatic = choice == config::DeviceCollectives::automatic;
  if (choice == config::DeviceCollectives::staged || (automatic && shared)) {
    MICS_LOG(info) << "collectives: host-staged MPI on device memory ("
                   << (automatic ? "ranks share GPUs" : "backend.collectives = staged") << ")";
    return std::make_unique<cuda::HostStagedTransport>(gpu->stream(), mpi);
  }
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  MICS_LOG(info) << "collectives: NCCL " << version / 10000 << "." << (version / 100) % 100 << "." << version % 100
                 << " on " << cuda::describe_device(gpu->device());
  cuda::NcclOptions options;
  if (on_unrecoverable) options.on_unrecoverable = on_unrecoverable;
  // The deck's run.timeout holds for NCCL as for MPI: a collective with no progress for that long fails.
  if (mpi.no_progress_limit().count() > 0) {
    options.timeout = mpi.no_progress_limit();
    options.init_timeout = mpi.no_progress_limit();
  }
  return std::make_unique<cuda::NcclTransport>(topology, gpu->device(), gpu->stream(), options);
}

}  // namespace mics::backends
