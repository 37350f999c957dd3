// Launchers of the CUDA kernels behind CudaBackend, one .cu file per concern (src/backends/cuda/).
// Every launcher enqueues on the stream it is given and returns at once; shapes follow
// mics::backends::Backend (row-major, N = B*T rows, nn.Linear weights (OC, C)), and so do the write (=)
// versus accumulate (+=) contracts. Plain C++17 and CUDA types only: the kernels build without MPI.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mics::backends::cuda {

inline constexpr float kLayerNormEps = 1e-5f;

// How cuBLAS multiplies fp32 matrices:
//   fp32: CUBLAS_COMPUTE_32F, exact fp32 products and sums (tests, reference runs);
//   bf16: CUBLAS_COMPUTE_32F_FAST_16BF, inputs rounded to bf16 (8-bit mantissa) on tensor cores, fp32
//         accumulation and fp32 storage (speed: about 15x the fp32 rate on an H100).
enum class MatmulPrecision { fp32, bf16 };
const char* to_string(MatmulPrecision precision);

// What every GEMM needs: a cuBLAS handle bound to `stream`, and the precision.
struct GemmContext {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  MatmulPrecision precision = MatmulPrecision::fp32;
};

// Rows of partial sums the deterministic column reductions use (layernorm and bias gradients).
inline constexpr int kColumnChunks = 64;

// --- encoder.cu ------------------------------------------------------------------------------------
// out (B,T,C) = wte[inp[b,t]] + wpe[t]
void encoder_forward(cudaStream_t stream, float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                     int B, int T, int C);
// Bytes of scratch encoder_backward_wte needs for N = B*T positions (CUB's size queries: ask once per call).
std::size_t encoder_backward_workspace_bytes(int N);
// dwte[inp[i]] += dout[i] (N,C), deterministic: positions are bucketed by token on the device (stable sort)
// and each bucket is summed in ascending position order, no atomics.
void encoder_backward_wte(cudaStream_t stream, float* dwte, const float* dout, const std::int32_t* inp, int N, int C,
                          void* workspace, std::size_t workspace_bytes);
// dwpe[t] += sum_b dout[b,t] (b ascending).
void encoder_backward_wpe(cudaStream_t stream, float* dwpe, const float* dout, int B, int T, int C);

// --- layernorm.cu ----------------------------------------------------------------------------------
// out (N,C) = (inp - mean) * rstd * weight + bias, two-pass variance; saves mean, rstd (N).
void layernorm_forward(cudaStream_t stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
// Floats of scratch layernorm_backward needs.
std::size_t layernorm_backward_workspace(int N, int C);
// dinp (N,C) += ...; dweight, dbias (C) += ... (column sums in a fixed order: deterministic).
void layernorm_backward(cudaStream_t stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd, int N, int C,
                        float* workspace);

// --- matmul.cu -------------------------------------------------------------------------------------
// Column-major cuBLAS product, strided over `batch`: C (m,n) = alpha op(A) op(B) + beta C, fp32 storage.
void gemm(const GemmContext& ctx, bool transpose_a, bool transpose_b, int m, int n, int k, float alpha,
          const float* A, int lda, long long stride_a, const float* B, int ldb, long long stride_b, float beta,
          float* C, int ldc, long long stride_c, int batch);
// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
void matmul_forward(const GemmContext& ctx, float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC);
// Floats of scratch matmul_backward needs (bias column partials).
std::size_t matmul_backward_workspace(int N, int OC);
// dinp (N,C) = dout @ weight (written; skipped when null); dweight (OC,C) += dout^T @ inp;
// dbias (OC) += column sums of dout (skipped when null; deterministic).
void matmul_backward(const GemmContext& ctx, float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC, float* workspace);

// --- attention.cu ----------------------------------------------------------------------------------
// Floats of scratch attention_forward / attention_backward need: q, k, v, dy, dq, dk, dv as
// (B,NH,T,hs) plus datt (B,NH,T,T).
std::size_t attention_workspace(int B, int T, int C, int NH);
// qkv (B,T,3C) -> out (B,T,C); att (B,NH,T,T) = causal softmax(q k^T / sqrt(hs)), zeros above the diagonal.
void attention_forward(const GemmContext& ctx, float* out, float* att, const float* qkv, int B, int T, int C,
                       int NH, float* workspace);
// dqkv (B,T,3C) written from dout (B,T,C), qkv and att as saved by the forward.
void attention_backward(const GemmContext& ctx, float* dqkv, const float* dout, const float* qkv, const float* att,
                        int B, int T, int C, int NH, float* workspace);

// One query q (C) over T cached keys and values k, v (rows ld floats apart) -> out (C): generation with a
// KV cache; one block per head, fp32 throughout.
void attention_decode(cudaStream_t stream, float* out, const float* q, const float* k, const float* v, int T, int C,
                      int NH, int ld);

// --- gelu.cu ---------------------------------------------------------------------------------------
void gelu_forward(cudaStream_t stream, float* out, const float* inp, std::size_t n);
// dinp = gelu'(inp) * dout (written; dinp may alias dout)
void gelu_backward(cudaStream_t stream, float* dinp, const float* inp, const float* dout, std::size_t n);

// --- crossentropy.cu -------------------------------------------------------------------------------
// One block per row of logits (N,Vp): an online max and rescaled sum over the V real columns in one read,
// then the row is overwritten with the softmax numerators exp(logit - rowmax) (columns < V);
// inv_sum (N) = 1 / their sum, losses (N) = log(sum) - (logit[target] - rowmax).
void crossentropy_forward(cudaStream_t stream, float* losses, float* inv_sum, float* logits,
                          const std::int32_t* targets, int N, int V, int Vp);
// In place over what the forward left: logits become dloss * (softmax - onehot(target)) for columns < V,
// 0 for padding.
void crossentropy_backward(cudaStream_t stream, float* logits, const float* inv_sum, const std::int32_t* targets,
                           float dloss, int N, int V, int Vp);

// --- vector_ops.cu ---------------------------------------------------------------------------------
void fill(cudaStream_t stream, float* x, std::size_t n, float value);
void axpy(cudaStream_t stream, float* y, float a, const float* x, std::size_t n);  // y += a*x
void scale(cudaStream_t stream, float* x, float a, std::size_t n);                 // x *= a
void add(cudaStream_t stream, float* out, const float* a, const float* b, std::size_t n);  // out = a + b
// Doubles of scratch sum_squares needs.
std::size_t sum_squares_workspace();
// *result (device) = sum x^2 accumulated in double; fixed grid and a fixed-order final pass: deterministic.
void sum_squares(cudaStream_t stream, double* result, const float* x, std::size_t n, double* workspace);

// --- adamw.cu --------------------------------------------------------------------------------------
// One AdamW step (decoupled weight decay) in place on params, m, v; m_scale = 1/(1-beta1^t) and
// v_scale = 1/(1-beta2^t) are hoisted by the caller (in double); grads are multiplied by grad_scale first.
void adamw(cudaStream_t stream, float* params, const float* grads, float* m, float* v, std::size_t n, float lr,
           float beta1, float beta2, float eps, float weight_decay, float m_scale, float v_scale, float grad_scale);
// *count (device) += the elements whose update would leave p, m or v not finite; reads only.
void adamw_count_nonfinite(cudaStream_t stream, unsigned long long* count, const float* params, const float* grads,
                           const float* m, const float* v, std::size_t n, float lr, float beta1, float beta2,
                           float eps, float weight_decay, float m_scale, float v_scale, float grad_scale);

// --- convert.cu ------------------------------------------------------------------------------------
// bf16 as raw bits (mics::bf16 layout): float -> bf16 rounds to nearest even, NaN stays NaN.
void f32_to_bf16(cudaStream_t stream, std::uint16_t* out, const float* in, std::size_t n);
void bf16_to_f32(cudaStream_t stream, float* out, const std::uint16_t* in, std::size_t n);

}  // namespace mics::backends::cuda
