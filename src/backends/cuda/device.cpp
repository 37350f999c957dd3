#include "mics/backends/cuda/device.hpp"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "mics/backends/cuda/check.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the "no driver / no device" error so later calls start clean
    return 0;
  }
  return count;
}

int local_rank_from_env() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') {
      char* end = nullptr;
      const long rank = std::strtol(value, &end, 10);
      if (end != value && *end == '\0' && rank >= 0) return static_cast<int>(rank);
    }
  }
  return 0;
}

int device_for_this_process() {
  const int count = device_count();
  if (count == 0) throw InputError("backend.device = cuda but no CUDA device is visible");
  return local_rank_from_env() % count;
}

std::string describe_device(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f", static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, " + memory + " GiB)";
}

}  // namespace mics::backends::cuda
