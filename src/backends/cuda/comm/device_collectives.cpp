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
#include "mics/comm/agreement.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

namespace {

using Uuid = std::array<char, sizeof(cudaUUID_t)>;

Uuid uuid_of(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  Uuid uuid{};
  std::copy(std::begin(prop.uuid.bytes), std::end(prop.uuid.bytes), uuid.begin());
  return uuid;
}

// The collective half of ranks_share_gpus: nothing in it fails on one rank alone (MPI errors abort).
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

constexpr std::array<const char*, 3> kModes = {"auto", "nccl", "staged"};

// MICS_CUDA_COLLECTIVES as an index of kModes (unset: auto); throws for any other value.
int mode_from_env() {
  const char* value = std::getenv("MICS_CUDA_COLLECTIVES");
  if (value == nullptr || *value == '\0') return 0;
  const auto* found = std::find(kModes.begin(), kModes.end(), std::string(value));
  if (found == kModes.end()) {
    throw Error("MICS_CUDA_COLLECTIVES = " + std::string(value) + " is not one of auto, nccl, staged");
  }
  return static_cast<int>(found - kModes.begin());
}

}  // namespace

bool ranks_share_gpus(int device, MPI_Comm world) { return share_uuids(uuid_of(device), world); }

DeviceCollectives choose_device_collectives(Backend& backend, topology::Topology& topology) {
  auto* gpu = dynamic_cast<CudaBackend*>(&backend);
  if (gpu == nullptr) return DeviceCollectives::none;  // the deck's backend.device: the same on every rank
  const MPI_Comm world = topology.world().handle();
  // Everything that can fail on one rank first (the setting, the GPU's identity), agreed before any other
  // collective: a rank that fails here leaves none waiting.
  std::string error;
  int mode = 0;
  Uuid gpu_uuid{};
  try {
    mode = mode_from_env();
    gpu_uuid = uuid_of(gpu->device());
  } catch (const Error& e) {
    error = e.what();
  }
  error = comm::first_error(world, error);
  if (!error.empty()) throw Error(error);
  // Every rank must build the same kind: a rank on NCCL and one on MPI would wait on each other forever.
  int modes[2] = {mode, -mode};  // reduced with MAX: {largest, -smallest}
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, modes, 2, MPI_INT, MPI_MAX, world));
  if (modes[0] != -modes[1]) throw Error("MICS_CUDA_COLLECTIVES differs between ranks: set it the same on all");
  const bool shared = share_uuids(gpu_uuid, world);
  const std::string choice = kModes[static_cast<std::size_t>(mode)];
  if (choice == "nccl" && shared) {
    throw Error("MICS_CUDA_COLLECTIVES = nccl, but ranks share a GPU: NCCL needs one GPU per rank");
  }
  if (choice == "staged" || (choice == "auto" && shared)) {
    MICS_LOG(info) << "collectives: host-staged MPI on device memory ("
                   << (choice == "staged" ? "MICS_CUDA_COLLECTIVES = staged" : "ranks share GPUs") << ")";
    return DeviceCollectives::staged;
  }
  return DeviceCollectives::nccl;
}

std::unique_ptr<comm::Collectives> make_device_collectives(DeviceCollectives choice, Backend& backend,
                                                           topology::Topology& topology, comm::Collectives& host) {
  if (choice == DeviceCollectives::none) return nullptr;
  auto* gpu = dynamic_cast<CudaBackend*>(&backend);
  MICS_CHECK(gpu != nullptr, "device collectives for a backend without device memory");
  if (choice == DeviceCollectives::staged) return std::make_unique<HostStagedCollectives>(gpu->stream(), host);
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  MICS_LOG(info) << "collectives: NCCL " << version / 10000 << "." << (version / 100) % 100 << "." << version % 100
                 << " on " << describe_device(gpu->device());
  return std::make_unique<NcclCollectives>(topology, gpu->device(), gpu->stream(), host);
}

}  // namespace mics::backends::cuda
