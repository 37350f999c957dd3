// Fused softmax + cross-entropy over the real vocabulary; padding columns V..Vp-1 never take part.
// The forward leaves exp(logit - rowmax) in place of the logits and keeps 1/sum per row, so the backward
// needs no second exp pass and there is no separate (N,Vp) probability buffer. The row loops are
// vectorised (omp simd, fast_exp): the row sum is accumulated lane-wise, in a different order than a
// serial loop but with the same float precision.
#include <cmath>
#include <cstddef>

#include "mics/backends/cpu/fast_exp.hpp"
#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

// logits (N,Vp) -> exp(logit - rowmax) for columns < V; losses, inv_sum (N); targets (N) in [0,V).
void crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets, int N, int V,
                          int Vp) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* row = logits + static_cast<std::size_t>(i) * Vp;
    float maxval = row[0];
#pragma omp simd reduction(max : maxval)
    for (int v = 1; v < V; v++) maxval = row[v] > maxval ? row[v] : maxval;
    const float target_shifted = row[targets[i]] - maxval;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; v++) {
      const float e = fast_exp(row[v] - maxval);
      row[v] = e;
      sum += e;
    }
    inv_sum[i] = 1.0f / sum;
    losses[i] = std::log(sum) - target_shifted;  // -log(softmax[target])
  }
}

// exp(logit - rowmax) -> dlogits = dloss * (softmax - onehot(target)); padding columns become 0.
void crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss, int N, int V,
                           int Vp) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* row = logits + static_cast<std::size_t>(i) * Vp;
    const float scale = dloss * inv_sum[i];
    for (int v = 0; v < V; v++) row[v] *= scale;
    row[targets[i]] -= dloss;
    for (int v = V; v < Vp; v++) row[v] = 0.0f;
  }
}

}  // namespace mics::backends::cpu
