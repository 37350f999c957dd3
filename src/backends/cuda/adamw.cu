// AdamW over one flat fp32 shard, in place: memory-bound, one read of p, g, m, v and one write of p, m, v
// per element.
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

//   g = grad*grad_scale;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p -= lr * (m*m_scale / (sqrt(v*v_scale) + eps) + wd*p)
// Shared by the update and the numerics guard's count, so both see the same values.
struct Updated {
  float p, m, v;
};
__device__ __forceinline__ Updated update_element(float p, float g_raw, float m, float v, float lr, float beta1,
                                                  float beta2, float eps, float weight_decay, float m_scale,
                                                  float v_scale, float grad_scale) {
  const float g = g_raw * grad_scale;
  const float mi = beta1 * m + (1.0f - beta1) * g;
  const float vi = beta2 * v + (1.0f - beta2) * g * g;
  return {p - lr * ((mi * m_scale) / (sqrtf(vi * v_scale) + eps) + weight_decay * p), mi, vi};
}

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, std::size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float m_scale, float v_scale,
                             float grad_scale) {
  MICS_GRID_STRIDE(i, n) {
    const Updated u = update_element(params[i], grads[i], m[i], v[i], lr, beta1, beta2, eps, weight_decay, m_scale,
                                     v_scale, grad_scale);
    m[i] = u.m;
    v[i] = u.v;
    params[i] = u.p;
  }
}

// An atomic only in a thread that found one: non-finite updates are rare, so the atomics cost nothing.
__global__ void adamw_count_nonfinite_kernel(unsigned long long* count, const float* params, const float* grads,
                                             const float* m, const float* v, std::size_t n, float lr, float beta1,
                                             float beta2, float eps, float weight_decay, float m_scale,
                                             float v_scale, float grad_scale) {
  unsigned long long bad = 0;
  MICS_GRID_STRIDE(i, n) {
    const Updated u = update_element(params[i], grads[i], m[i], v[i], lr, beta1, beta2, eps, weight_decay, m_scale,
                                     v_scale, grad_scale);
    bad += !(isfinite(u.p) && isfinite(u.m) && isfinite(u.v));
  }
  if (bad != 0) atomicAdd(count, bad);
}

}  // namespace

void adamw(cudaStream_t stream, float* params, const float* grads, float* m, float* v, std::size_t n, float lr,
           float beta1, float beta2, float eps, float weight_decay, float m_scale, float v_scale, float grad_scale) {
  if (n == 0) return;
  adamw_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(params, grads, m, v, n, lr, beta1, beta2, eps,
                                                             weight_decay, m_scale, v_scale, grad_scale);
  CUDA_CHECK_LAUNCH();
}

void adamw_count_nonfinite(cudaStream_t stream, unsigned long long* count, const float* params, const float* grads,
                           const float* m, const float* v, std::size_t n, float lr, float beta1, float beta2,
                           float eps, float weight_decay, float m_scale, float v_scale, float grad_scale) {
  if (n == 0) return;
  adamw_count_nonfinite_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(
      count, params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, m_scale, v_scale, grad_scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
