// LayerNorm over the last dimension, eps 1e-5.
#include <cmath>
#include <cstddef>

#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

// inp, out (N,C); weight, bias (C); saves mean, rstd (N) for the backward.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* x = inp + static_cast<std::size_t>(i) * C;
    float* y = out + static_cast<std::size_t>(i) * C;
    float m = 0.0f;
    for (int c = 0; c < C; c++) m += x[c];
    m /= static_cast<float>(C);
    float var = 0.0f;  // two-pass variance: no cancellation when |mean| >> std
    for (int c = 0; c < C; c++) {
      const float d = x[c] - m;
      var += d * d;
    }
    var /= static_cast<float>(C);
    const float s = 1.0f / std::sqrt(var + kLayerNormEps);
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[i] = m;
    rstd[i] = s;
  }
}

// dinp += rstd * (g - mean(g) - norm * mean(g * norm)) with g = dout * weight, norm = (x - mean) * rstd;
// dweight += sum_i dout * norm; dbias += sum_i dout. Rows in parallel for dinp, then column slices in
// parallel for the parameter gradients (each thread owns its slice: no reduction races).
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int i = 0; i < N; i++) {
      const float* dy = dout + static_cast<std::size_t>(i) * C;
      const float* x = inp + static_cast<std::size_t>(i) * C;
      float* dx = dinp + static_cast<std::size_t>(i) * C;
      const float m = mean[i];
      const float s = rstd[i];
      float g_mean = 0.0f;
      float g_norm_mean = 0.0f;
      for (int c = 0; c < C; c++) {
        const float g = dy[c] * weight[c];
        g_mean += g;
        g_norm_mean += g * (x[c] - m) * s;
      }
      g_mean /= static_cast<float>(C);
      g_norm_mean /= static_cast<float>(C);
      for (int c = 0; c < C; c++) {
        const float norm = (x[c] - m) * s;
        dx[c] += s * (dy[c] * weight[c] - g_mean - norm * g_norm_mean);
      }
    }
    constexpr int kSlice = 64;
    const int slices = (C + kSlice - 1) / kSlice;
#pragma omp for schedule(static)
    for (int sl = 0; sl < slices; sl++) {
      const int c0 = sl * kSlice;
      const int c1 = c0 + kSlice < C ? c0 + kSlice : C;
      for (int i = 0; i < N; i++) {
        const float* dy = dout + static_cast<std::size_t>(i) * C;
        const float* x = inp + static_cast<std::size_t>(i) * C;
        const float m = mean[i];
        const float s = rstd[i];
        for (int c = c0; c < c1; c++) {
          dbias[c] += dy[c];
          dweight[c] += dy[c] * (x[c] - m) * s;
        }
      }
    }
  }
}

}  // namespace mics::backends::cpu
