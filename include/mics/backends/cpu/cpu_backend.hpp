// The fp32 CPU backend: host memory (64-byte aligned), OpenBLAS for GEMMs, OpenMP for everything else.
#pragma once
#include "mics/backends/backend.hpp"

namespace mics::backends::cpu {

class CpuBackend final : public Backend {
 public:
  // threads > 0 sets the OpenMP thread count (otherwise OpenMP's default stands). OpenBLAS is set to one
  // thread: every op, GEMMs included, parallelises over OpenMP threads only.
  explicit CpuBackend(int threads = 0);

  std::string_view name() const override { return "cpu"; }

  void* allocate_bytes(std::size_t bytes) override;
  void free_bytes(void* ptr) noexcept override;
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, std::size_t bytes) override;
  void synchronize() override {}

  void fill(float* x, std::size_t n, float value) override;
  void copy(float* dst, const float* src, std::size_t n) override;
  void axpy(float* y, float a, const float* x, std::size_t n) override;
  void scale(float* x, float a, std::size_t n) override;
  double sum_squares(const float* x, std::size_t n) override;
  void to_bf16(bf16* dst, const float* src, std::size_t n) override;
  void from_bf16(float* dst, const bf16* src, std::size_t n) override;
  void adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp) override;
  void adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v, std::size_t n,
                             const AdamWStep& hp) override;
  std::uint64_t take_nonfinite_count() override;

  void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override;
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B, int T,
                        int C) override;
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C) override;
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, const float* mean, const float* rstd, int N, int C) override;
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC) override;
  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                       const float* weight, int N, int C, int OC) override;
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) override;
  void attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH,
                        int ld) override;
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B, int T, int C,
                          int NH) override;
  void gelu_forward(float* out, const float* inp, std::size_t n) override;
  void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) override;
  void residual_forward(float* out, const float* a, const float* b, std::size_t n) override;
  void crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets, int N,
                            int V, int Vp) override;
  void crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss, int N,
                             int V, int Vp) override;

 private:
  std::uint64_t nonfinite_count_ = 0;
};

}  // namespace mics::backends::cpu
