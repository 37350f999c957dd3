#include "mics/backends/cuda/check.hpp"

#include <cstdio>
#include <string>

#include "mics/util/error.hpp"

namespace mics::backends::cuda {

namespace {
std::string where(const char* file, int line, const char* call) {
  return std::string(file) + ":" + std::to_string(line) + ": " + call;
}
}  // namespace

void cuda_failed(const char* file, int line, const char* call, cudaError_t error) {
  throw PeerError("CUDA error at " + where(file, line, call) + ": " + cudaGetErrorName(error) + " (" +
              cudaGetErrorString(error) + ")");
}

void cublas_failed(const char* file, int line, const char* call, cublasStatus_t status) {
  throw PeerError("cuBLAS error at " + where(file, line, call) + ": " + cublasGetStatusName(status) + " (" +
              cublasGetStatusString(status) + ")");
}

void cuda_warn(const char* file, int line, const char* call, cudaError_t error) noexcept {
  std::fprintf(stderr, "mics: CUDA error at %s:%d: %s: %s (%s)\n", file, line, call, cudaGetErrorName(error),
               cudaGetErrorString(error));
}

}  // namespace mics::backends::cuda
