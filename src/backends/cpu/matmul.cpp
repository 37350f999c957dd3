// nn.Linear: every product through OpenBLAS sgemm, transposes expressed as sgemm flags (no copies).
#include <cblas.h>

#include <omp.h>

#include <cstddef>

#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {
namespace {

// C (M,N) = alpha op(A) op(B) + beta C, row-major, split across the OpenMP threads along the larger of M and
// N; each thread runs a single-threaded sgemm on its block. OpenBLAS's own thread pool stays at one thread
// (CpuBackend sets it): its spinning workers and OpenMP's would otherwise fight over the same cores.
void parallel_sgemm(CBLAS_TRANSPOSE trans_a, CBLAS_TRANSPOSE trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  constexpr int kGranule = 64;  // block edges on cache-line / micro-kernel multiples
  const bool split_n = N >= M;
  const int extent = split_n ? N : M;
#pragma omp parallel
  {
    const int threads = omp_get_num_threads();
    const int thread = omp_get_thread_num();
    const int granules = (extent + kGranule - 1) / kGranule;
    const int g0 = static_cast<int>(static_cast<long>(granules) * thread / threads);
    const int g1 = static_cast<int>(static_cast<long>(granules) * (thread + 1) / threads);
    const int begin = g0 * kGranule;
    const int end = g1 * kGranule < extent ? g1 * kGranule : extent;
    if (begin < end) {
      const std::size_t b = static_cast<std::size_t>(begin);
      if (split_n) {  // columns begin..end of C and of op(B)
        const float* B_part = trans_b == CblasNoTrans ? B + b : B + b * ldb;
        cblas_sgemm(CblasRowMajor, trans_a, trans_b, M, end - begin, K, alpha, A, lda, B_part, ldb, beta, C + b, ldc);
      } else {  // rows begin..end of C and of op(A)
        const float* A_part = trans_a == CblasNoTrans ? A + b * lda : A + b;
        cblas_sgemm(CblasRowMajor, trans_a, trans_b, end - begin, N, K, alpha, A_part, lda, B, ldb, beta, C + b * ldc,
                    ldc);
      }
    }
  }
}

}  // namespace

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC)
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC) {
  parallel_sgemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
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
    parallel_sgemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
  }
  parallel_sgemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
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
