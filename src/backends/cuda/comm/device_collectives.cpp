#include "mics/backends/cuda/device_collectives.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <vector>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/host_staged_collectives.hpp"
#include "mics/backends/cuda/nccl_collectives.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

bool ranks_share_gpus(int device, MPI_Comm world) {
  using Uuid = std::array<char, sizeof(cudaUUID_t)>;
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  Uuid mine{};
  std::copy(std::begin(prop.uuid.bytes), std::end(prop.uuid.bytes), mine.begin());
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

std::unique_ptr<comm::Collectives> make_device_collectives(Backend& backend, topology::Topology& topology,
                                                           comm::Collectives& host) {
  auto* gpu = dynamic_cast<CudaBackend*>(&backend);
  if (gpu == nullptr) return nullptr;

  static constexpr std::array<const char*, 3> kModes = {"auto", "nccl", "staged"};
  int mode = 0;
  if (const char* value = std::getenv("MICS_CUDA_COLLECTIVES"); value != nullptr && *value != '\0') {
    const auto* found = std::find(kModes.begin(), kModes.end(), std::string(value));
    if (found == kModes.end()) {
      throw Error("MICS_CUDA_COLLECTIVES = " + std::string(value) + " is not one of auto, nccl, staged");
    }
    mode = static_cast<int>(found - kModes.begin());
  }
  // Every rank must build the same kind: a rank on NCCL and one on MPI would wait on each other forever.
  int modes[2] = {mode, -mode};  // reduced with MAX: {largest, -smallest}
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, modes, 2, MPI_INT, MPI_MAX, topology.world().handle()));
  if (modes[0] != -modes[1]) throw Error("MICS_CUDA_COLLECTIVES differs between ranks: set it the same on all");
  const bool shared = ranks_share_gpus(gpu->device(), topology.world().handle());
  const std::string choice = kModes[static_cast<std::size_t>(mode)];
  if (choice == "nccl" && shared) {
    throw Error("MICS_CUDA_COLLECTIVES = nccl, but ranks share a GPU: NCCL needs one GPU per rank");
  }
  if (choice == "staged" || (choice == "auto" && shared)) {
    MICS_LOG(info) << "collectives: host-staged MPI on device memory ("
                   << (choice == "staged" ? "MICS_CUDA_COLLECTIVES = staged" : "ranks share GPUs") << ")";
    return std::make_unique<HostStagedCollectives>(gpu->stream(), host);
  }
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  MICS_LOG(info) << "collectives: NCCL " << version / 10000 << "." << (version / 100) % 100 << "." << version % 100
                 << " on " << describe_device(gpu->device());
  return std::make_unique<NcclCollectives>(topology, gpu->device(), gpu->stream(), host);
}

}  // namespace mics::backends::cuda
