// Token + position embedding, forward and a deterministic backward (no atomics: dwte is summed per token
// bucket in a fixed order, dwpe per position over the batch in order).
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

// one thread per output element of out (B,T,C)
__global__ void encoder_forward_kernel(float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                                       int T, int C, std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    const std::size_t bt = i / static_cast<std::size_t>(C);
    const int c = static_cast<int>(i % static_cast<std::size_t>(C));
    const int t = static_cast<int>(bt % static_cast<std::size_t>(T));
    const std::size_t token = static_cast<std::size_t>(inp[bt]);
    out[i] = wte[token * C + c] + wpe[static_cast<std::size_t>(t) * C + c];
  }
}

// grid (buckets, ceil(C/block)): thread c of bucket u sums dout[positions[k], c] over its bucket in order.
__global__ void encoder_backward_wte_kernel(float* dwte, const float* dout, const std::int32_t* tokens,
                                            const std::int32_t* offsets, const std::int32_t* positions, int C) {
  const int u = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.0f;
  for (int k = offsets[u]; k < offsets[u + 1]; ++k) sum += dout[static_cast<std::size_t>(positions[k]) * C + c];
  dwte[static_cast<std::size_t>(tokens[u]) * C + c] += sum;
}

// one thread per (t, c): sum over b in order
__global__ void encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t TC = static_cast<std::size_t>(T) * C;
  if (i >= TC) return;
  float sum = 0.0f;
  for (int b = 0; b < B; ++b) sum += dout[static_cast<std::size_t>(b) * TC + i];
  dwpe[i] += sum;
}

}  // namespace

void encoder_forward(cudaStream_t stream, float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                     int B, int T, int C) {
  const std::size_t total = static_cast<std::size_t>(B) * T * C;
  encoder_forward_kernel<<<grid_stride_blocks(total), kBlock, 0, stream>>>(out, inp, wte, wpe, T, C, total);
  CUDA_CHECK_LAUNCH();
}

void encoder_backward_wte(cudaStream_t stream, float* dwte, const float* dout, const std::int32_t* tokens,
                          const std::int32_t* offsets, const std::int32_t* positions, int buckets, int C) {
  if (buckets == 0) return;
  const dim3 grid(static_cast<unsigned int>(buckets), blocks_for(static_cast<std::size_t>(C)));
  encoder_backward_wte_kernel<<<grid, kBlock, 0, stream>>>(dwte, dout, tokens, offsets, positions, C);
  CUDA_CHECK_LAUNCH();
}

void encoder_backward_wpe(cudaStream_t stream, float* dwpe, const float* dout, int B, int T, int C) {
  const std::size_t TC = static_cast<std::size_t>(T) * C;
  if (TC == 0 || B == 0) return;  // a grid of zero blocks is a launch error
  encoder_backward_wpe_kernel<<<blocks_for(TC), kBlock, 0, stream>>>(dwpe, dout, B, T, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
