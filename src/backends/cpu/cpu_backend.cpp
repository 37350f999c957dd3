// CpuBackend: host memory and dispatch to the kernels.
#include "mics/backends/cpu/cpu_backend.hpp"

#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "mics/backends/cpu/adamw.hpp"
#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {

namespace {
constexpr std::size_t kAlignment = 64;  // a cache line; also what AVX-512 loads like
}

CpuBackend::CpuBackend(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
  // GEMMs are split across OpenMP threads, each calling a single-threaded sgemm (see matmul.cpp)
  openblas_set_num_threads(1);
}

void* CpuBackend::allocate_bytes(std::size_t bytes) {
  // aligned_alloc wants a multiple of the alignment
  const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (ptr == nullptr) throw std::bad_alloc();
  return ptr;
}

void CpuBackend::free_bytes(void* ptr) noexcept { std::free(ptr); }

void CpuBackend::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  std::memcpy(host_dst, src, bytes);
}

void CpuBackend::copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
  std::memcpy(dst, host_src, bytes);
}

void CpuBackend::fill(float* x, std::size_t n, float value) { cpu::fill(x, n, value); }
void CpuBackend::copy(float* dst, const float* src, std::size_t n) { cpu::copy(dst, src, n); }
void CpuBackend::axpy(float* y, float a, const float* x, std::size_t n) { cpu::axpy(y, a, x, n); }
void CpuBackend::scale(float* x, float a, std::size_t n) { cpu::scale(x, a, n); }
double CpuBackend::sum_squares(const float* x, std::size_t n) { return cpu::sum_squares(x, n); }
void CpuBackend::to_bf16(bf16* dst, const float* src, std::size_t n) { cpu::to_bf16(dst, src, n); }
void CpuBackend::from_bf16(float* dst, const bf16* src, std::size_t n) { cpu::from_bf16(dst, src, n); }
void CpuBackend::adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp) {
  cpu::adamw(params, grads, m, v, n, hp);
}
void CpuBackend::adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v,
                                       std::size_t n, const AdamWStep& hp) {
  nonfinite_count_ += cpu::adamw_count_nonfinite(params, grads, m, v, n, hp);
}
std::uint64_t CpuBackend::take_nonfinite_count() { return std::exchange(nonfinite_count_, 0); }

void CpuBackend::encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B,
                                 int T, int C) {
  cpu::encoder_forward(out, inp, wte, wpe, B, T, C);
}
void CpuBackend::encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B,
                                  int T, int C) {
  cpu::encoder_backward(dwte, dwpe, dout, inp, B, T, C);
}
void CpuBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                   const float* bias, int N, int C) {
  cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}
void CpuBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                    const float* weight, const float* mean, const float* rstd, int N, int C) {
  cpu::layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
void CpuBackend::matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                                int OC) {
  cpu::matmul_forward(out, inp, weight, bias, N, C, OC);
}
void CpuBackend::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                 const float* weight, int N, int C, int OC) {
  cpu::matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
}
void CpuBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  cpu::attention_forward(out, att, qkv, B, T, C, NH);
}
void CpuBackend::attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH,
                                  int ld) {
  cpu::attention_decode(out, q, k, v, T, C, NH, ld);
}
void CpuBackend::attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                                    int T, int C, int NH) {
  cpu::attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
}
void CpuBackend::gelu_forward(float* out, const float* inp, std::size_t n) { cpu::gelu_forward(out, inp, n); }
void CpuBackend::gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
  cpu::gelu_backward(dinp, inp, dout, n);
}
void CpuBackend::residual_forward(float* out, const float* a, const float* b, std::size_t n) {
  cpu::add(out, a, b, n);
}
void CpuBackend::crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets,
                                      int N, int V, int Vp) {
  cpu::crossentropy_forward(losses, inv_sum, logits, targets, N, V, Vp);
}
void CpuBackend::crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss,
                                       int N, int V, int Vp) {
  cpu::crossentropy_backward(logits, inv_sum, targets, dloss, N, V, Vp);
}

}  // namespace mics::backends::cpu
