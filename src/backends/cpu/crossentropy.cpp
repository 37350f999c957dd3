// Fused softmax + cross-entropy over the real vocabulary; padding columns V..Vp-1 never take part.
// The forward keeps only each row's log-sum-exp, so the backward rebuilds the probabilities in place over
// the logits: no (N,Vp) probability buffer.
#include <cmath>
#include <cstddef>

#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

// logits (N,Vp); losses, lse (N); targets (N) in [0,V).
void crossentropy_forward(float* losses, float* lse, const float* logits, const std::int32_t* targets, int N,
                          int V, int Vp) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    const float* row = logits + static_cast<std::size_t>(i) * Vp;
    float maxval = row[0];
    for (int v = 1; v < V; v++) maxval = row[v] > maxval ? row[v] : maxval;
    float sum = 0.0f;
    for (int v = 0; v < V; v++) sum += std::exp(row[v] - maxval);
    const float row_lse = maxval + std::log(sum);
    lse[i] = row_lse;
    losses[i] = row_lse - row[targets[i]];
  }
}

// logits become dlogits = dloss * (softmax - onehot(target)); padding columns become 0.
void crossentropy_backward(float* logits, const float* lse, const std::int32_t* targets, float dloss, int N, int V,
                           int Vp) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* row = logits + static_cast<std::size_t>(i) * Vp;
    const float row_lse = lse[i];
    for (int v = 0; v < V; v++) row[v] = dloss * std::exp(row[v] - row_lse);
    row[targets[i]] -= dloss;
    for (int v = V; v < Vp; v++) row[v] = 0.0f;
  }
}

}  // namespace mics::backends::cpu
