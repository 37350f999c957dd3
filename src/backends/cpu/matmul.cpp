// nn.Linear: every product through OpenBLAS sgemm, transposes expressed as sgemm flags (no copies).
#include <cblas.h>

#include <cstddef>

#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC)
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
  if (bias == nullptr) return;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < N; i++) {
    float* row = out + static_cast<std::size_t>(i) * OC;
    for (int o = 0; o < OC; o++) row[o] += bias[o];
  }
}

// dinp (N,C) = dout (N,OC) @ weight (OC,C); dweight (OC,C) += dout^T @ inp; dbias (OC) += sum_i dout[i].
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC) {
  if (dinp != nullptr) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias == nullptr) return;
  // Column sums: each thread owns a slice of output channels and streams down the rows.
  constexpr int kSlice = 64;
  const int slices = (OC + kSlice - 1) / kSlice;
#pragma omp parallel for schedule(static)
  for (int s = 0; s < slices; s++) {
    const int o0 = s * kSlice;
    const int o1 = o0 + kSlice < OC ? o0 + kSlice : OC;
    for (int i = 0; i < N; i++) {
      const float* row = dout + static_cast<std::size_t>(i) * OC;
      for (int o = o0; o < o1; o++) dbias[o] += row[o];
    }
  }
}

}  // namespace mics::backends::cpu
