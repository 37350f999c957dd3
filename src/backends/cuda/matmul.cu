// nn.Linear on cuBLAS. cuBLAS is column-major: a row-major (r,c) matrix is the column-major (c,r) matrix
// of its transpose, so every row-major product below is written as the transposed column-major one.
// Bias add and bias gradient are small kernels (the gradient a deterministic two-pass column sum).
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

// out (N,OC) += bias (OC) per row
__global__ void add_bias_kernel(float* out, const float* bias, int OC, std::size_t total) {
  MICS_GRID_STRIDE(i, total) { out[i] += bias[i % static_cast<std::size_t>(OC)]; }
}

// grid (ceil(OC/block), chunks): partial[chunk, o] = sum of dout[r, o] over the chunk's rows
__global__ void bias_partials_kernel(float* partial, const float* dout, int N, int OC, int rows_per_chunk) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  const int chunk = blockIdx.y;
  const int r0 = chunk * rows_per_chunk;
  const int r1 = min(N, r0 + rows_per_chunk);
  float sum = 0.0f;
  for (int r = r0; r < r1; ++r) sum += dout[static_cast<std::size_t>(r) * OC + o];
  partial[static_cast<std::size_t>(chunk) * OC + o] = sum;
}

__global__ void bias_reduce_kernel(float* dbias, const float* partial, int chunks, int OC) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  float sum = 0.0f;
  for (int k = 0; k < chunks; ++k) sum += partial[static_cast<std::size_t>(k) * OC + o];
  dbias[o] += sum;
}

}  // namespace

const char* to_string(MatmulPrecision precision) {
  return precision == MatmulPrecision::bf16 ? "bf16" : "fp32";
}

void gemm(const GemmContext& ctx, bool transpose_a, bool transpose_b, int m, int n, int k, float alpha,
          const float* A, int lda, long long stride_a, const float* B, int ldb, long long stride_b, float beta,
          float* C, int ldc, long long stride_c, int batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  const cublasOperation_t op_a = transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasComputeType_t compute =
      ctx.precision == MatmulPrecision::bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  if (batch == 1) {
    CUBLAS_CHECK(cublasGemmEx(ctx.handle, op_a, op_b, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &beta,
                              C, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT));
  } else {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(ctx.handle, op_a, op_b, m, n, k, &alpha, A, CUDA_R_32F, lda, stride_a, B,
                                            CUDA_R_32F, ldb, stride_b, &beta, C, CUDA_R_32F, ldc, stride_c, batch,
                                            compute, CUBLAS_GEMM_DEFAULT));
  }
}

// out^T (OC,N) = W (OC,C) @ inp^T (C,N): A = weight buffer read as (C,OC) col-major, transposed.
void matmul_forward(const GemmContext& ctx, float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
  gemm(ctx, true, false, OC, N, C, 1.0f, weight, C, 0, inp, C, 0, 0.0f, out, OC, 0, 1);
  if (bias == nullptr) return;
  const std::size_t total = static_cast<std::size_t>(N) * OC;
  add_bias_kernel<<<grid_stride_blocks(total), kBlock, 0, ctx.stream>>>(out, bias, OC, total);
  CUDA_CHECK_LAUNCH();
}

std::size_t matmul_backward_workspace(int N, int OC) {
  return static_cast<std::size_t>(column_chunks(N)) * static_cast<std::size_t>(OC);
}

void matmul_backward(const GemmContext& ctx, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, float* workspace) {
  // dinp^T (C,N) = W^T (C,OC) @ dout^T (OC,N): both buffers already hold these column-major
  if (dinp != nullptr) gemm(ctx, false, false, C, N, OC, 1.0f, weight, C, 0, dout, OC, 0, 0.0f, dinp, C, 0, 1);
  // dweight^T (C,OC) += inp^T (C,N) @ dout (N,OC): dout's buffer is dout^T column-major, so transpose it
  gemm(ctx, false, true, C, OC, N, 1.0f, inp, C, 0, dout, OC, 0, 1.0f, dweight, C, 0, 1);
  if (dbias == nullptr || N == 0) return;
  const int chunks = column_chunks(N);
  const int rows_per_chunk = (N + chunks - 1) / chunks;
  const dim3 grid(blocks_for(static_cast<std::size_t>(OC)), static_cast<unsigned int>(chunks));
  bias_partials_kernel<<<grid, kBlock, 0, ctx.stream>>>(workspace, dout, N, OC, rows_per_chunk);
  CUDA_CHECK_LAUNCH();
  bias_reduce_kernel<<<blocks_for(static_cast<std::size_t>(OC)), kBlock, 0, ctx.stream>>>(dbias, workspace, chunks,
                                                                                           OC);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
