// Links the CUDA parts (cudart, cuBLAS, NCCL) so CI proves the toolchain end to end without a GPU.
// The CUDA backend itself is built in this folder by the CUDA backend issue.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>

#include "mics/backends/cuda_probe.hpp"

namespace mics::cuda {

__global__ void fill_kernel(float* out, float value, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

DeviceInfo probe() {
  DeviceInfo info;
  int version = 0;
  ncclGetVersion(&version);
  info.nccl_version = version;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky "no device" error
    return info;
  }
  info.device_count = count;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) info.name = prop.name;
  // A real round trip through a kernel and cuBLAS: y = 2*x on the device, read back.
  constexpr int n = 256;
  float* x = nullptr;
  float* y = nullptr;
  if (cudaMalloc(&x, n * sizeof(float)) != cudaSuccess) return info;
  cudaMalloc(&y, n * sizeof(float));
  fill_kernel<<<1, n>>>(x, 1.5f, n);
  cudaMemset(y, 0, n * sizeof(float));
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) == CUBLAS_STATUS_SUCCESS) {
    const float alpha = 2.0f;
    cublasSaxpy(handle, n, &alpha, x, 1, y, 1);
    float host[n];
    cudaMemcpy(host, y, sizeof(host), cudaMemcpyDeviceToHost);
    info.kernel_ok = host[0] == 3.0f && host[n - 1] == 3.0f;
    cublasDestroy(handle);
  }
  cudaFree(x);
  cudaFree(y);
  return info;
}

}  // namespace mics::cuda
