// LayerNorm over the last dimension (eps 1e-5): one warp per row for the row-wise parts; the parameter
// gradients are column sums done in two fixed-order passes (deterministic, no atomics).
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

// one warp per row of inp (N,C)
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const float* x = inp + static_cast<std::size_t>(row) * C;
  float sum = 0.0f;
  for (int c = lane; c < C; c += kWarp) sum += x[c];
  const float m = warp_sum(sum) / static_cast<float>(C);
  float var = 0.0f;  // two-pass: no cancellation when |mean| >> std
  for (int c = lane; c < C; c += kWarp) {
    const float d = x[c] - m;
    var += d * d;
  }
  const float s = rsqrtf(warp_sum(var) / static_cast<float>(C) + kLayerNormEps);
  float* y = out + static_cast<std::size_t>(row) * C;
  for (int c = lane; c < C; c += kWarp) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}

// dinp += rstd * (g - mean(g) - norm * mean(g * norm)), g = dout * weight; one warp per row
__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                const float* weight, const float* mean, const float* rstd, int N,
                                                int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const std::size_t base = static_cast<std::size_t>(row) * C;
  const float m = mean[row];
  const float s = rstd[row];
  float g_sum = 0.0f, g_norm_sum = 0.0f;
  for (int c = lane; c < C; c += kWarp) {
    const float g = dout[base + c] * weight[c];
    g_sum += g;
    g_norm_sum += g * (inp[base + c] - m) * s;
  }
  const float g_mean = warp_sum(g_sum) / static_cast<float>(C);
  const float g_norm_mean = warp_sum(g_norm_sum) / static_cast<float>(C);
  for (int c = lane; c < C; c += kWarp) {
    const float norm = (inp[base + c] - m) * s;
    dinp[base + c] += s * (dout[base + c] * weight[c] - g_mean - norm * g_norm_mean);
  }
}

// grid (ceil(C/block), chunks): partial[chunk] of sum dout and sum dout*norm over the chunk's rows
__global__ void layernorm_backward_partials_kernel(float* partial_dw, float* partial_db, const float* dout,
                                                   const float* inp, const float* mean, const float* rstd, int N,
                                                   int C, int rows_per_chunk) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float dw = 0.0f, db = 0.0f;
  for (int r = r0; r < r1; ++r) {
    const std::size_t i = static_cast<std::size_t>(r) * C + c;
    db += dout[i];
    dw += dout[i] * (inp[i] - mean[r]) * rstd[r];
  }
  partial_dw[static_cast<std::size_t>(chunk) * C + c] = dw;
  partial_db[static_cast<std::size_t>(chunk) * C + c] = db;
}

__global__ void layernorm_backward_reduce_kernel(float* dweight, float* dbias, const float* partial_dw,
                                                 const float* partial_db, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float dw = 0.0f, db = 0.0f;
  for (int k = 0; k < chunks; ++k) {
    dw += partial_dw[static_cast<std::size_t>(k) * C + c];
    db += partial_db[static_cast<std::size_t>(k) * C + c];
  }
  dweight[c] += dw;
  dbias[c] += db;
}

}  // namespace

void layernorm_forward(cudaStream_t stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
  if (N == 0) return;
  layernorm_forward_kernel<<<blocks_for(static_cast<std::size_t>(N), kRowsPerBlock), kBlock, 0, stream>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  CUDA_CHECK_LAUNCH();
}

std::size_t layernorm_backward_workspace(int N, int C) {
  return 2 * static_cast<std::size_t>(column_chunks(N)) * static_cast<std::size_t>(C);
}

void layernorm_backward(cudaStream_t stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd, int N, int C,
                        float* workspace) {
  if (N == 0) return;
  layernorm_backward_input_kernel<<<blocks_for(static_cast<std::size_t>(N), kRowsPerBlock), kBlock, 0, stream>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  CUDA_CHECK_LAUNCH();
  const int chunks = column_chunks(N);
  const int rows_per_chunk = (N + chunks - 1) / chunks;
  float* partial_dw = workspace;
  float* partial_db = workspace + static_cast<std::size_t>(chunks) * C;
  const dim3 grid(blocks_for(static_cast<std::size_t>(C)), static_cast<unsigned int>(chunks));
  layernorm_backward_partials_kernel<<<grid, kBlock, 0, stream>>>(partial_dw, partial_db, dout, inp, mean, rstd, N,
                                                                  C, rows_per_chunk);
  CUDA_CHECK_LAUNCH();
  layernorm_backward_reduce_kernel<<<blocks_for(static_cast<std::size_t>(C)), kBlock, 0, stream>>>(
      dweight, dbias, partial_dw, partial_db, chunks, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
