// Fused softmax + cross-entropy over the real vocabulary (columns V..Vp-1 are padding). The forward reads
// each row once with an online max and rescaled sum (no probability buffer), then overwrites the row with
// the softmax numerators exp(logit - rowmax) and keeps 1/sum; the backward scales them in place into the
// gradient, with no second exp pass.
#include <cmath>

#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

constexpr int kCeBlock = 512;

// Running (max, sum of exp(x - max)) pairs, merged associatively.
struct MaxSum {
  float max;
  float sum;
};

__device__ inline MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};  // both empty
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

// one block per row of logits (N,Vp)
__global__ void crossentropy_forward_kernel(float* losses, float* inv_sum, float* logits,
                                            const std::int32_t* targets, int V, int Vp) {
  __shared__ MaxSum shared[kCeBlock / kWarp];
  __shared__ MaxSum row_total;
  const std::size_t row = blockIdx.x;
  float* x = logits + row * static_cast<std::size_t>(Vp);
  MaxSum acc{-INFINITY, 0.0f};
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float value = x[v];
    if (value > acc.max) {
      acc.sum = acc.sum * expf(acc.max - value) + 1.0f;  // expf(-inf) = 0 on the first element
      acc.max = value;
    } else if (value != -INFINITY) {  // exp(-inf) adds 0; with acc.max still -inf it would be exp(NaN)
      acc.sum += expf(value - acc.max);
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, acc.max, offset), __shfl_xor_sync(0xffffffffu, acc.sum, offset)};
    acc = merge(acc, other);
  }
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  if (lane == 0) shared[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    MaxSum total = shared[0];
    for (int w = 1; w < static_cast<int>(blockDim.x / kWarp); ++w) total = merge(total, shared[w]);
    row_total = total;
    inv_sum[row] = 1.0f / total.sum;
    losses[row] = logf(total.sum) - (x[targets[row]] - total.max);  // read before the overwrite below
  }
  __syncthreads();
  const float maxval = row_total.max;
  for (int v = threadIdx.x; v < V; v += blockDim.x) x[v] = expf(x[v] - maxval);
}

__global__ void crossentropy_backward_kernel(float* logits, const float* inv_sum, const std::int32_t* targets,
                                             float dloss, int V, int Vp) {
  const std::size_t row = blockIdx.x;
  float* x = logits + row * static_cast<std::size_t>(Vp);
  const float scale = dloss * inv_sum[row];
  const int target = targets[row];
  for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
    float g = 0.0f;
    if (v < V) g = x[v] * scale - (v == target ? dloss : 0.0f);
    x[v] = g;
  }
}

}  // namespace

void crossentropy_forward(cudaStream_t stream, float* losses, float* inv_sum, float* logits,
                          const std::int32_t* targets, int N, int V, int Vp) {
  if (N == 0) return;
  crossentropy_forward_kernel<<<static_cast<unsigned int>(N), kCeBlock, 0, stream>>>(losses, inv_sum, logits, targets,
                                                                                     V, Vp);
  CUDA_CHECK_LAUNCH();
}

void crossentropy_backward(cudaStream_t stream, float* logits, const float* inv_sum, const std::int32_t* targets,
                           float dloss, int N, int V, int Vp) {
  if (N == 0) return;
  crossentropy_backward_kernel<<<static_cast<unsigned int>(N), kCeBlock, 0, stream>>>(logits, inv_sum, targets, dloss,
                                                                                      V, Vp);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
