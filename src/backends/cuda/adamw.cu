// AdamW over one flat fp32 shard, in place: memory-bound, one read of p, g, m, v and one write of p, m, v
// per element.
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

//   g = grad*grad_scale;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p -= lr * (m*m_scale / (sqrt(v*v_scale) + eps) + wd*p)
__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, std::size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float m_scale, float v_scale,
                             float grad_scale) {
  MICS_GRID_STRIDE(i, n) {
    const float g = grads[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = params[i];
    params[i] = p - lr * ((mi * m_scale) / (sqrtf(vi * v_scale) + eps) + weight_decay * p);
  }
}

}  // namespace

void adamw(cudaStream_t stream, float* params, const float* grads, float* m, float* v, std::size_t n, float lr,
           float beta1, float beta2, float eps, float weight_decay, float m_scale, float v_scale, float grad_scale) {
  if (n == 0) return;
  adamw_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(params, grads, m, v, n, lr, beta1, beta2, eps,
                                                             weight_decay, m_scale, v_scale, grad_scale);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
