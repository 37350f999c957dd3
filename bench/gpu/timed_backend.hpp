// A Backend decorator for the GPU benchmark: forwards every op to a CudaBackend and brackets it with CUDA
// events on the compute stream, so the time of each op kind is measured on the device without serialising
// the host. Events are kept per op call and read after the step's synchronize().
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <vector>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/raii.hpp"

namespace mics::bench {

class TimedBackend final : public backends::Backend {
 public:
  explicit TimedBackend(backends::cuda::CudaBackend& inner) : inner_(inner) {}

  // Milliseconds per op kind since the last call (synchronizes first), then clears.
  std::map<std::string, double> take_times() {
    inner_.synchronize();
    std::map<std::string, double> times;
    for (const Timing& t : timings_) {
      float ms = 0.0f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, t.start.get(), t.stop.get()));
      times[t.name] += ms;
    }
    timings_.clear();
    return times;
  }
  void set_enabled(bool enabled) { enabled_ = enabled; }

  std::string_view name() const override { return "cuda"; }
  void* allocate_bytes(std::size_t bytes) override { return inner_.allocate_bytes(bytes); }
  void free_bytes(void* ptr) noexcept override { inner_.free_bytes(ptr); }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override { inner_.copy_to_host(dst, src, bytes); }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    inner_.copy_from_host(dst, src, bytes);
  }
  void synchronize() override { inner_.synchronize(); }

  void fill(float* x, std::size_t n, float value) override {
    timed("fill", [&] { inner_.fill(x, n, value); });
  }
  void copy(float* dst, const float* src, std::size_t n) override {
    timed("copy", [&] { inner_.copy(dst, src, n); });
  }
  void axpy(float* y, float a, const float* x, std::size_t n) override {
    timed("axpy", [&] { inner_.axpy(y, a, x, n); });
  }
  void scale(float* x, float a, std::size_t n) override {
    timed("scale", [&] { inner_.scale(x, a, n); });
  }
  double sum_squares(const float* x, std::size_t n) override { return inner_.sum_squares(x, n); }
  void to_bf16(bf16* dst, const float* src, std::size_t n) override {
    timed("to_bf16", [&] { inner_.to_bf16(dst, src, n); });
  }
  void from_bf16(float* dst, const bf16* src, std::size_t n) override {
    timed("from_bf16", [&] { inner_.from_bf16(dst, src, n); });
  }
  void adamw(float* p, const float* g, float* m, float* v, std::size_t n, const backends::AdamWStep& hp) override {
    timed("adamw", [&] { inner_.adamw(p, g, m, v, n, hp); });
  }
  void adamw_count_nonfinite(const float* p, const float* g, const float* m, const float* v, std::size_t n,
                             const backends::AdamWStep& hp) override {
    timed("adamw_count_nonfinite", [&] { inner_.adamw_count_nonfinite(p, g, m, v, n, hp); });
  }
  std::uint64_t take_nonfinite_count() override { return inner_.take_nonfinite_count(); }
  void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override {
    timed("encoder_forward", [&] { inner_.encoder_forward(out, inp, wte, wpe, B, T, C); });
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B, int T,
                        int C) override {
    timed("encoder_backward", [&] { inner_.encoder_backward(dwte, dwpe, dout, inp, B, T, C); });
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                         int N, int C) override {
    timed("layernorm_forward", [&] { inner_.layernorm_forward(out, mean, rstd, inp, w, b, N, C); });
  }
  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    timed("layernorm_backward", [&] { inner_.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C); });
  }
  void matmul_forward(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC) override {
    timed("matmul_forward", [&] { inner_.matmul_forward(out, inp, w, b, N, C, OC); });
  }
  void matmul_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w, int N,
                       int C, int OC) override {
    timed("matmul_backward", [&] { inner_.matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC); });
  }
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) override {
    timed("attention_forward", [&] { inner_.attention_forward(out, att, qkv, B, T, C, NH); });
  }
  void attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH,
                        int ld) override {
    timed("attention_decode", [&] { inner_.attention_decode(out, q, k, v, T, C, NH, ld); });
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B, int T, int C,
                          int NH) override {
    timed("attention_backward", [&] { inner_.attention_backward(dqkv, dout, qkv, att, B, T, C, NH); });
  }
  void gelu_forward(float* out, const float* inp, std::size_t n) override {
    timed("gelu_forward", [&] { inner_.gelu_forward(out, inp, n); });
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) override {
    timed("gelu_backward", [&] { inner_.gelu_backward(dinp, inp, dout, n); });
  }
  void residual_forward(float* out, const float* a, const float* b, std::size_t n) override {
    timed("residual_forward", [&] { inner_.residual_forward(out, a, b, n); });
  }
  void crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets, int N, int V,
                            int Vp) override {
    timed("crossentropy_forward", [&] { inner_.crossentropy_forward(losses, inv_sum, logits, targets, N, V, Vp); });
  }
  void crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss, int N,
                             int V, int Vp) override {
    timed("crossentropy_backward", [&] { inner_.crossentropy_backward(logits, inv_sum, targets, dloss, N, V, Vp); });
  }

 private:
  struct Timing {
    std::string name;
    backends::cuda::Event start{true}, stop{true};
  };
  template <class F>
  void timed(const char* op, F&& run) {
    if (!enabled_) {
      run();
      return;
    }
    Timing& t = timings_.emplace_back(Timing{op});
    t.start.record(inner_.stream());
    run();
    t.stop.record(inner_.stream());
  }

  backends::cuda::CudaBackend& inner_;
  bool enabled_ = false;
  std::vector<Timing> timings_;
};

}  // namespace mics::bench
