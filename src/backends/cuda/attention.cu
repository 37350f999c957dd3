// Causal multi-head attention as batched GEMMs (llm.c's formulation): permute the fused qkv into per-head
// q, k, v (B,NH,T,hs), scores = q k^T on cuBLAS straight into att, a causal softmax kernel in place,
// y = att v, and un-permute into out (B,T,C). The backward mirrors it with four GEMMs and a softmax
// backward kernel. Above the diagonal att holds exact zeros, so the full T x T products equal the
// causal sums.
#include <cmath>

#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

constexpr int kRowsPerBlock = kBlock / kWarp;

// Element i of a (B,NH,T,hs) tensor, and where it sits in a (B,T,...) row-major tensor whose rows hold
// `row` elements with head h's hs columns starting at h*hs.
struct HeadIndex {
  std::size_t b;
  int h, t, d;
  __device__ HeadIndex(std::size_t i, int T, int NH, int hs) {
    d = static_cast<int>(i % hs);
    std::size_t rest = i / hs;
    t = static_cast<int>(rest % T);
    rest /= T;
    h = static_cast<int>(rest % NH);
    b = rest / NH;
  }
  __device__ std::size_t in_rows(int T, std::size_t row, int hs) const {
    return (b * T + t) * row + static_cast<std::size_t>(h) * hs + d;
  }
};

// qkv (B,T,3,NH,hs) -> q, k, v (B,NH,T,hs); one thread per element of q
__global__ void permute_qkv_kernel(float* q, float* k, float* v, const float* qkv, int T, int NH, int hs,
                                   std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    const std::size_t C = static_cast<std::size_t>(NH) * hs;
    const std::size_t src = HeadIndex(i, T, NH, hs).in_rows(T, 3 * C, hs);
    q[i] = qkv[src];
    k[i] = qkv[src + C];
    v[i] = qkv[src + 2 * C];
  }
}

// y (B,NH,T,hs) -> out (B,T,NH*hs)
__global__ void unpermute_kernel(float* out, const float* y, int T, int NH, int hs, std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    out[HeadIndex(i, T, NH, hs).in_rows(T, static_cast<std::size_t>(NH) * hs, hs)] = y[i];
  }
}

// out (B,T,NH*hs) -> y (B,NH,T,hs): the inverse of unpermute (for dout)
__global__ void permute_heads_kernel(float* y, const float* out, int T, int NH, int hs, std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    y[i] = out[HeadIndex(i, T, NH, hs).in_rows(T, static_cast<std::size_t>(NH) * hs, hs)];
  }
}

// dq, dk, dv (B,NH,T,hs) -> dqkv (B,T,3,NH,hs), written
__global__ void unpermute_qkv_kernel(float* dqkv, const float* dq, const float* dk, const float* dv, int T, int NH,
                                     int hs, std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    const std::size_t C = static_cast<std::size_t>(NH) * hs;
    const std::size_t dst = HeadIndex(i, T, NH, hs).in_rows(T, 3 * C, hs);
    dqkv[dst] = dq[i];
    dqkv[dst + C] = dk[i];
    dqkv[dst + 2 * C] = dv[i];
  }
}

// In place over att rows (B*NH*T rows of T): row t keeps softmax over columns 0..t, zeros after.
// One warp per row.
__global__ void causal_softmax_kernel(float* att, int T, std::size_t rows) {
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  float* a = att + row * T;
  float maxval = -INFINITY;
  for (int j = lane; j <= t; j += kWarp) maxval = fmaxf(maxval, a[j]);
  maxval = warp_max(maxval);
  float sum = 0.0f;
  for (int j = lane; j <= t; j += kWarp) {
    const float e = expf(a[j] - maxval);
    a[j] = e;
    sum += e;
  }
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < T; j += kWarp) a[j] = j <= t ? a[j] * inv : 0.0f;
}

// In place over datt rows: dpre = scale * p * (dp - sum_j p_j dp_j) for columns <= t, 0 after.
__global__ void causal_softmax_backward_kernel(float* datt, const float* att, int T, float scale, std::size_t rows) {
  const std::size_t row = static_cast<std::size_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  float* d = datt + row * T;
  const float* p = att + row * T;
  float weighted = 0.0f;
  for (int j = lane; j <= t; j += kWarp) weighted += p[j] * d[j];
  weighted = warp_sum(weighted);
  for (int j = lane; j < T; j += kWarp) d[j] = j <= t ? scale * p[j] * (d[j] - weighted) : 0.0f;
}

struct Scratch {
  float *q, *k, *v, *dy, *dq, *dk, *dv, *datt;
};

Scratch carve(float* workspace, int B, int T, int C) {
  const std::size_t btc = static_cast<std::size_t>(B) * T * C;
  Scratch s{};
  s.q = workspace;
  s.k = s.q + btc;
  s.v = s.k + btc;
  s.dy = s.v + btc;
  s.dq = s.dy + btc;
  s.dk = s.dq + btc;
  s.dv = s.dk + btc;
  s.datt = s.dv + btc;
  return s;
}

}  // namespace

std::size_t attention_workspace(int B, int T, int C, int NH) {
  const std::size_t btc = static_cast<std::size_t>(B) * T * C;
  return 7 * btc + static_cast<std::size_t>(B) * NH * T * T;
}

void attention_forward(const GemmContext& ctx, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH, float* workspace) {
  const int hs = C / NH;
  const std::size_t btc = static_cast<std::size_t>(B) * T * C;
  if (btc == 0) return;
  const Scratch s = carve(workspace, B, T, C);
  permute_qkv_kernel<<<grid_stride_blocks(btc), kBlock, 0, ctx.stream>>>(s.q, s.k, s.v, qkv, T, NH, hs, btc);
  CUDA_CHECK_LAUNCH();
  const int batch = B * NH;
  const long long head = static_cast<long long>(T) * hs;
  const long long square = static_cast<long long>(T) * T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // scores^T (t2,t) = k (t2,hs) @ q^T: col-major k^T buffer transposed, q^T buffer as is
  gemm(ctx, true, false, T, T, hs, scale, s.k, hs, head, s.q, hs, head, 0.0f, att, T, square, batch);
  const std::size_t rows = static_cast<std::size_t>(batch) * T;
  causal_softmax_kernel<<<blocks_for(rows, kRowsPerBlock), kBlock, 0, ctx.stream>>>(att, T, rows);
  CUDA_CHECK_LAUNCH();
  // y^T (hs,t) = v^T (hs,t2) @ att^T (t2,t): both buffers hold these column-major. y goes into dy.
  gemm(ctx, false, false, hs, T, T, 1.0f, s.v, hs, head, att, T, square, 0.0f, s.dy, hs, head, batch);
  unpermute_kernel<<<grid_stride_blocks(btc), kBlock, 0, ctx.stream>>>(out, s.dy, T, NH, hs, btc);
  CUDA_CHECK_LAUNCH();
}

void attention_backward(const GemmContext& ctx, float* dqkv, const float* dout, const float* qkv, const float* att,
                        int B, int T, int C, int NH, float* workspace) {
  const int hs = C / NH;
  const std::size_t btc = static_cast<std::size_t>(B) * T * C;
  if (btc == 0) return;
  const Scratch s = carve(workspace, B, T, C);
  permute_qkv_kernel<<<grid_stride_blocks(btc), kBlock, 0, ctx.stream>>>(s.q, s.k, s.v, qkv, T, NH, hs, btc);
  CUDA_CHECK_LAUNCH();
  permute_heads_kernel<<<grid_stride_blocks(btc), kBlock, 0, ctx.stream>>>(s.dy, dout, T, NH, hs, btc);
  CUDA_CHECK_LAUNCH();
  const int batch = B * NH;
  const long long head = static_cast<long long>(T) * hs;
  const long long square = static_cast<long long>(T) * T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // datt (t,t2) = dy (t,hs) @ v^T: same form as the scores
  gemm(ctx, true, false, T, T, hs, 1.0f, s.v, hs, head, s.dy, hs, head, 0.0f, s.datt, T, square, batch);
  // dv (t2,hs) = att^T @ dy: dv^T (hs,t2) = dy^T (hs,t) @ att (t,t2); att's buffer is att^T, transpose it
  gemm(ctx, false, true, hs, T, T, 1.0f, s.dy, hs, head, att, T, square, 0.0f, s.dv, hs, head, batch);
  const std::size_t rows = static_cast<std::size_t>(batch) * T;
  causal_softmax_backward_kernel<<<blocks_for(rows, kRowsPerBlock), kBlock, 0, ctx.stream>>>(s.datt, att, T, scale,
                                                                                             rows);
  CUDA_CHECK_LAUNCH();
  // dq (t,hs) = dpre (t,t2) @ k: dq^T = k^T (hs,t2) @ dpre^T (t2,t)
  gemm(ctx, false, false, hs, T, T, 1.0f, s.k, hs, head, s.datt, T, square, 0.0f, s.dq, hs, head, batch);
  // dk (t2,hs) = dpre^T @ q: dk^T = q^T (hs,t) @ dpre (t,t2)
  gemm(ctx, false, true, hs, T, T, 1.0f, s.q, hs, head, s.datt, T, square, 0.0f, s.dk, hs, head, batch);
  unpermute_qkv_kernel<<<grid_stride_blocks(btc), kBlock, 0, ctx.stream>>>(dqkv, s.dq, s.dk, s.dv, T, NH, hs, btc);
  CUDA_CHECK_LAUNCH();
}

namespace {

__device__ float block_max(float value, float* shared) {
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  value = warp_max(value);
  __syncthreads();
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  return warp_max(lane < warps ? shared[lane] : -INFINITY);
}

// One block per head: scores of the T cached keys into shared memory, softmax, then out = p v.
__global__ void attention_decode_kernel(float* out, const float* q, const float* k, const float* v, int T, int hs,
                                        int ld, float scale) {
  extern __shared__ float row[];  // T scores
  __shared__ float reduce[kWarp];
  const int h = blockIdx.x;
  const float* qh = q + static_cast<std::size_t>(h) * hs;
  float local_max = -INFINITY;
  for (int t2 = threadIdx.x; t2 < T; t2 += blockDim.x) {
    const float* kh = k + static_cast<std::size_t>(t2) * ld + static_cast<std::size_t>(h) * hs;
    float dot = 0.0f;
    for (int i = 0; i < hs; ++i) dot += qh[i] * kh[i];
    dot *= scale;
    row[t2] = dot;
    local_max = fmaxf(local_max, dot);
  }
  const float maxval = block_max(local_max, reduce);
  float local_sum = 0.0f;
  for (int t2 = threadIdx.x; t2 < T; t2 += blockDim.x) {
    const float e = expf(row[t2] - maxval);
    row[t2] = e;
    local_sum += e;
  }
  const float inv_sum = 1.0f / block_sum(local_sum, reduce);  // block_sum synchronizes: row is complete
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float acc = 0.0f;
    for (int t2 = 0; t2 < T; ++t2) acc += row[t2] * inv_sum * v[static_cast<std::size_t>(t2) * ld + static_cast<std::size_t>(h) * hs + i];
    out[static_cast<std::size_t>(h) * hs + i] = acc;
  }
}

}  // namespace

void attention_decode(cudaStream_t stream, float* out, const float* q, const float* k, const float* v, int T, int C,
                      int NH, int ld) {
  const int hs = C / NH;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  const std::size_t shared = static_cast<std::size_t>(T) * sizeof(float);
  attention_decode_kernel<<<NH, kBlock, shared, stream>>>(out, q, k, v, T, hs, ld, scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
