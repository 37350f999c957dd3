// Token + position embedding.
#include <cstddef>

#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

// out (B,T,C) = wte[inp[b,t]] + wpe[t]
void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      const std::size_t bt = static_cast<std::size_t>(b) * T + t;
      float* out_bt = out + bt * C;
      const float* wte_ix = wte + static_cast<std::size_t>(inp[bt]) * C;
      const float* wpe_t = wpe + static_cast<std::size_t>(t) * C;
      for (int c = 0; c < C; c++) out_bt[c] = wte_ix[c] + wpe_t[c];
    }
  }
}

// dwte[inp[b,t]] += dout[b,t]; dwpe[t] += dout[b,t]. Two positions may share a token, so threads split the
// channels (each owns a column slice of dwte and dwpe) rather than the positions: no races, no atomics.
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B, int T, int C) {
  constexpr int kSlice = 64;
  const int slices = (C + kSlice - 1) / kSlice;
#pragma omp parallel for schedule(static)
  for (int s = 0; s < slices; s++) {
    const int c0 = s * kSlice;
    const int c1 = c0 + kSlice < C ? c0 + kSlice : C;
    for (int b = 0; b < B; b++) {
      for (int t = 0; t < T; t++) {
        const std::size_t bt = static_cast<std::size_t>(b) * T + t;
        const float* dout_bt = dout + bt * C;
        float* dwte_ix = dwte + static_cast<std::size_t>(inp[bt]) * C;
        float* dwpe_t = dwpe + static_cast<std::size_t>(t) * C;
        for (int c = c0; c < c1; c++) {
          dwte_ix[c] += dout_bt[c];
          dwpe_t[c] += dout_bt[c];
        }
      }
    }
  }
}

}  // namespace mics::backends::cpu
