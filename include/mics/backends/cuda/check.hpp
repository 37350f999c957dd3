// Error checks for the CUDA runtime and cuBLAS (llm.c style): a failed call throws mics::PeerError (a device failure) whose
// message names the call, the file and the line, and the library's own error string. Destructors use the
// *_WARN forms, which print the same message to stderr and carry on (a destructor must not throw).
// Needs only CUDA: no MPI, so the kernels and their tests build on a bare GPU machine.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace mics::backends::cuda {

[[noreturn]] void cuda_failed(const char* file, int line, const char* call, cudaError_t error);
[[noreturn]] void cublas_failed(const char* file, int line, const char* call, cublasStatus_t status);
void cuda_warn(const char* file, int line, const char* call, cudaError_t error) noexcept;

}  // namespace mics::backends::cuda

#define CUDA_CHECK(call)                                                                       \
  do {                                                                                         \
    const cudaError_t mics_cuda_rc_ = (call);                                                  \
    if (mics_cuda_rc_ != cudaSuccess)                                                          \
      ::mics::backends::cuda::cuda_failed(__FILE__, __LINE__, #call, mics_cuda_rc_);           \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUDA_WARN(call)                                                                        \
  do {                                                                                         \
    const cudaError_t mics_cuda_rc_ = (call);                                                  \
    if (mics_cuda_rc_ != cudaSuccess)                                                          \
      ::mics::backends::cuda::cuda_warn(__FILE__, __LINE__, #call, mics_cuda_rc_);             \
  } while (0)

#define CUBLAS_CHECK(call)                                                                     \
  do {                                                                                         \
    const cublasStatus_t mics_cublas_rc_ = (call);                                             \
    if (mics_cublas_rc_ != CUBLAS_STATUS_SUCCESS)                                              \
      ::mics::backends::cuda::cublas_failed(__FILE__, __LINE__, #call, mics_cublas_rc_);       \
  } while (0)
