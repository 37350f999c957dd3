// fp32 <-> bf16 for half-size parameter gathers: gather bf16 shards, widen to fp32 for compute.
#include <cstdint>

#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

// The same bit arithmetic as mics::bf16::round_from_float, so both backends produce identical bits.
// (__float2bfloat16_rn rounds alike for numbers but turns every NaN into the canonical 0x7FFF, dropping
// its sign and payload, where the host keeps the top bits and sets the quiet bit.)
__device__ inline std::uint16_t round_to_bf16(float value) {
  const std::uint32_t word = __float_as_uint(value);
  if ((word & 0x7F800000u) == 0x7F800000u && (word & 0x007FFFFFu) != 0) {
    return static_cast<std::uint16_t>((word >> 16) | 0x0040u);  // keep a NaN a NaN
  }
  // round to nearest, ties to even; a carry into the exponent rounds up correctly (to infinity at most)
  const std::uint32_t rounding = 0x7FFFu + ((word >> 16) & 1u);
  return static_cast<std::uint16_t>((word + rounding) >> 16);
}

__global__ void f32_to_bf16_kernel(std::uint16_t* out, const float* in, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { out[i] = round_to_bf16(in[i]); }
}

// exact: the bf16 bits are the top half of the float
__global__ void bf16_to_f32_kernel(float* out, const std::uint16_t* in, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { out[i] = __uint_as_float(static_cast<std::uint32_t>(in[i]) << 16); }
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
