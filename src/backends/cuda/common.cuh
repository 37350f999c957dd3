// Device helpers shared by the kernel files: launch geometry and warp / block reductions.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {

inline constexpr int kWarp = 32;
inline constexpr int kBlock = 256;  // default threads per block of the elementwise kernels

inline unsigned int blocks_for(std::size_t n, int block = kBlock) {
  return static_cast<unsigned int>((n + static_cast<std::size_t>(block) - 1) / static_cast<std::size_t>(block));
}

template <typename T>
__device__ inline T warp_sum(T value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ inline float warp_max(float value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 values. Fixed order for a fixed block size: deterministic.
template <typename T>
__device__ inline T block_sum(T value, T* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  value = warp_sum(value);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  T total = lane < warps ? shared[lane] : T(0);
  return warp_sum(total);
}

// Row chunks of the deterministic two-pass column sums (kColumnChunks, or one per row when fewer).
inline int column_chunks(int rows) { return rows < kColumnChunks ? rows : kColumnChunks; }

// Grid-stride loop bounds for elementwise kernels over n elements.
#define MICS_GRID_STRIDE(i, n)                                                                   \
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<std::size_t>(blockDim.x) * gridDim.x)

// Blocks for a grid-stride kernel: enough to fill the GPU, capped so huge n does not overflow the grid.
inline unsigned int grid_stride_blocks(std::size_t n) {
  const unsigned int blocks = blocks_for(n);
  constexpr unsigned int kMaxBlocks = 65535u * 8u;
  return blocks == 0 ? 1u : (blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace mics::backends::cuda
