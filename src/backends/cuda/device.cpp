#include "mics/backends/cuda/device.hpp"

#include <utility>

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

double datasheet_peak_flops(int device, bool bf16, std::string& name) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  name = prop.name;
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  // Dense (no sparsity) TFLOP/s from NVIDIA's datasheets: {bf16 tensor core, fp32}.
  struct Entry {
    const char* part;
    double bf16, fp32;
  };
  static const Entry table[] = {
      {"H200", 989.4, 66.9}, {"GH200", 989.4, 66.9}, {"H100 PCIe", 756.0, 51.2}, {"H100 NVL", 835.0, 60.0},
      {"H100", 989.4, 66.9}, {"H800", 989.4, 66.9},  {"A100", 312.0, 19.5},     {"A800", 312.0, 19.5},
      {"L40S", 362.1, 91.6}, {"L40", 181.0, 90.5},   {"A10G", 70.0, 31.2},      {"A10", 125.0, 31.2},
      {"L4", 121.0, 30.3},   {"A6000", 154.8, 38.7}, {"B200", 2250.0, 80.0},
  };
  for (const Entry& e : table)
    if (has(e.part)) return (bf16 ? e.bf16 : e.fp32) * 1e12;
  return 0;
}

namespace {
// (free, total) bytes of `device`, as cudaMemGetInfo reports them.
std::pair<std::size_t, std::size_t> memory_info(int device) {
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) CUDA_CHECK(cudaSetDevice(device));
  std::size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (current != device) CUDA_CHECK(cudaSetDevice(current));
  CUDA_CHECK(status);
  return {free_bytes, total_bytes};
}
}  // namespace

std::size_t device_memory_used(int device) {
  const auto [free_bytes, total_bytes] = memory_info(device);
  return total_bytes - free_bytes;
}

std::size_t device_memory_free(int device) { return memory_info(device).first; }

std::string describe_device(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f", static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, " + memory + " GiB)";
}

}  // namespace mics::backends::cuda
