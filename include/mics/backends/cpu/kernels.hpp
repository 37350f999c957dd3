// fp32 CPU kernels of the GPT-2 ops (llm.c style): plain functions on host pointers, OpenMP inside, every
// GEMM through OpenBLAS sgemm. CpuBackend dispatches to these; the contracts (shapes, which outputs are
// written and which accumulated) are those documented on mics::backends::Backend.
#pragma once
#include "mics/util/bf16.hpp"
#include <cstddef>
#include <cstdint>

namespace mics::backends::cpu {

inline constexpr float kLayerNormEps = 1e-5f;

// encoder.cpp
void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B, int T, int C);

// layernorm.cpp
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C);
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C);

// matmul.cpp
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC);
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int N, int C, int OC);

// attention.cpp
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
void attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH, int ld);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B, int T, int C,
                        int NH);

// gelu.cpp
void gelu_forward(float* out, const float* inp, std::size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n);

// crossentropy.cpp
void crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets, int N,
                          int V, int Vp);
void crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss, int N, int V,
                           int Vp);

// vector_ops.cpp
void fill(float* x, std::size_t n, float value);
void copy(float* dst, const float* src, std::size_t n);
void axpy(float* y, float a, const float* x, std::size_t n);
void scale(float* x, float a, std::size_t n);
double sum_squares(const float* x, std::size_t n);
void to_bf16(bf16* dst, const float* src, std::size_t n);    // round to nearest even
void from_bf16(float* dst, const bf16* src, std::size_t n);  // exact
void add(float* out, const float* a, const float* b, std::size_t n);

}  // namespace mics::backends::cpu
