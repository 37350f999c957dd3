// fp32 <-> bf16 for half-size parameter gathers: gather bf16 shards, widen to fp32 for compute.
#include <cuda_bf16.h>

#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

// __float2bfloat16_rn rounds to nearest even and keeps NaN a NaN, as mics::bf16 does on the host.
__global__ void f32_to_bf16_kernel(std::uint16_t* out, const float* in, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i])); }
}

__global__ void bf16_to_f32_kernel(float* out, const std::uint16_t* in, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { out[i] = __bfloat162float(__ushort_as_bfloat16(in[i])); }
}

}  // namespace

void f32_to_bf16(cudaStream_t stream, std::uint16_t* out, const float* in, std::size_t n) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(out, in, n);
  CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(cudaStream_t stream, float* out, const std::uint16_t* in, std::size_t n) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(out, in, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
