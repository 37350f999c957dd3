// The compute backend: every op the GPT-2 model and the engine run, forward and backward, on memory the
// backend owns (host memory for the CPU backend, device memory for a CUDA one). The model and the engine
// only ever hold raw pointers into Buffers and call these virtuals, so a new backend plugs in without
// touching either.
//
// Conventions (llm.c): row-major; N = B*T rows; nn.Linear layout weight (OC, C) with out = inp @ W^T + b.
// Backward ops ACCUMULATE (+=) into parameter gradients. For activation gradients each op says whether
// it writes (=) or accumulates (+=) dinp.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mics/config/options.hpp"
#include "mics/util/bf16.hpp"

namespace mics::backends {

// Hyper-parameters of one AdamW update (decoupled weight decay).
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  int step;                 // 1-based: bias correction uses beta^step
  float grad_scale = 1.0f;  // multiplies every gradient first (clipping), saving a pass over them

  // Bias corrections 1/(1-beta1^step) and 1/(1-beta2^step): per step, not per element, so every backend
  // hoists them, in double (beta^t for large t loses digits in float).
  float m_scale() const { return static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), step))); }
  float v_scale() const { return static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), step))); }
};

class Backend;

// RAII owner of `count` elements of T in the backend's memory; move-only. An empty Buffer owns nothing.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& owner, std::size_t count);
  ~Buffer() { release(); }
  Buffer(Buffer&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        count_(std::exchange(other.count_, 0)) {}
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      owner_ = std::exchange(other.owner_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t bytes() const { return count_ * sizeof(T); }
  bool empty() const { return count_ == 0; }

 private:
  void release();
  Backend* owner_ = nullptr;
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;  // "cpu", "cuda"

  // --- memory --------------------------------------------------------------------------------------
  // Raw allocation (aligned to at least 64 bytes, contents undefined); prefer Buffer<T>.
  virtual void* allocate_bytes(std::size_t bytes) = 0;
  virtual void free_bytes(void* ptr) noexcept = 0;
  template <typename T>
  Buffer<T> alloc(std::size_t count) {
    return Buffer<T>(*this, count);
  }
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, std::size_t bytes) = 0;
  // Waits until every op issued so far has finished (a no-op on the CPU).
  virtual void synchronize() = 0;

  // --- vector ops on flat fp32 buffers ---------------------------------------------------------------
  virtual void fill(float* x, std::size_t n, float value) = 0;
  void zero(float* x, std::size_t n) { fill(x, n, 0.0f); }
  virtual void copy(float* dst, const float* src, std::size_t n) = 0;
  virtual void axpy(float* y, float a, const float* x, std::size_t n) = 0;  // y += a*x
  virtual void scale(float* x, float a, std::size_t n) = 0;                 // x *= a
  virtual double sum_squares(const float* x, std::size_t n) = 0;            // sum x^2, double accumulation
  // bf16 copies of parameters for half-size gathers: round to nearest even, and back (exact).
  virtual void to_bf16(bf16* dst, const float* src, std::size_t n) = 0;
  virtual void from_bf16(float* dst, const bf16* src, std::size_t n) = 0;
  virtual void adamw(float* params, const float* grads, float* m, float* v, std::size_t n,
                     const AdamWStep& hp) = 0;
  // The numerics guard's look ahead: counts, changing nothing, the elements whose adamw update (the same
  // arithmetic) would leave a parameter or moment that is not finite. Counts add up on the backend, so a
  // device waits once per step, in take_nonfinite_count(), which returns the sum and resets it.
  virtual void adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v,
                                     std::size_t n, const AdamWStep& hp) = 0;
  virtual std::uint64_t take_nonfinite_count() = 0;

  // --- GPT-2 ops -------------------------------------------------------------------------------------
  // out (B,T,C) = wte[inp[b,t]] + wpe[t]; inp (B,T) token ids < Vp; wte (Vp,C); wpe (maxT,C), T <= maxT.
  virtual void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                               int B, int T, int C) = 0;
  // dwte += scatter of dout by token, dwpe[t] += sum_b dout[b,t]; dout (B,T,C).
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B,
                                int T, int C) = 0;

  // out (N,C) = (inp - mean) * rstd * weight + bias per row, eps 1e-5; saves mean (N), rstd (N).
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                 const float* bias, int N, int C) = 0;
  // dinp (N,C) += ...; dweight (C) += ...; dbias (C) += ... (dinp ACCUMULATES: it is the residual stream).
  virtual void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                  const float* inp, const float* weight, const float* mean, const float* rstd,
                                  int N, int C) = 0;

  // out (N,OC) = inp (N,C) @ weight(OC,C)^T + bias (OC); bias may be null.
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                              int OC) = 0;
  // dinp (N,C) = dout @ weight (WRITES dinp; skipped when dinp is null); dweight (OC,C) += dout^T @ inp;
  // dbias (OC) += column sums of dout (skipped when null). dinp must not alias dout or inp.
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, int N, int C, int OC) = 0;

  // Causal multi-head attention on fused qkv (B,T,3C) laid out [q | k | v], each split into NH heads of
  // hs = C/NH: out (B,T,C); att (B,NH,T,T) saves the softmax weights (row t valid for t2 <= t, rest 0).
  virtual void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) = 0;
  // dqkv (B,T,3C) = gradient through attention (WRITES dqkv); dout (B,T,C); att, qkv as saved by forward.
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                                  int T, int C, int NH) = 0;

  // One new position over a key/value cache (generation with a KV cache): q (C) the new position's
  // query; k, v (T,C) the keys and values of positions 0..T-1, the new one last (rows `ld` floats apart);
  // head h at columns h*hs..h*hs+hs-1; out (C) = softmax(q k^T / sqrt(hs)) v per head, over all T rows
  // (causal by construction). The same arithmetic as row T-1 of attention_forward.
  virtual void attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH,
                                int ld) = 0;

  // out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  virtual void gelu_forward(float* out, const float* inp, std::size_t n) = 0;
  // dinp (n) = gelu'(inp) * dout (WRITES dinp; dinp may alias dout).
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) = 0;

  // out (n) = a + b; out may alias a or b.
  virtual void residual_forward(float* out, const float* a, const float* b, std::size_t n) = 0;

  // Softmax + cross-entropy over the real vocab V of logits (N,Vp) (columns V..Vp-1 are padding and are
  // ignored): losses (N) = -log softmax(logits[i])[targets[i]]. Fused with the backward: the logits are
  // overwritten with the softmax numerators exp(logit - rowmax) and inv_sum (N) keeps 1 / their row sum.
  virtual void crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets,
                                    int N, int V, int Vp) = 0;
  // In place over what the forward left: logits (N,Vp) become dlogits = dloss * (softmax - onehot(target))
  // for columns < V and 0 for padding columns; dloss is the same scalar for every row (e.g. grad_scale / N
  // for a mean loss).
  virtual void crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss,
                                     int N, int V, int Vp) = 0;
};

// The FLOP/s an MFU is measured against, and where the number comes from (for the log).
struct PeakRate {
  double flops_per_s = 0;
  std::string source;  // "measured fp32 sgemm 512^3 on 4 threads", "NVIDIA H100 dense bf16 (datasheet)"
};
// Times backend.matmul_forward on square n x n operands for about `seconds` (at least 3 calls): a
// measured ceiling, used where no datasheet number is known (the cpu).
PeakRate measure_matmul_rate(Backend& backend, int n = 512, double seconds = 0.2);
// The backend's peak for MFU: the cuda backend's datasheet dense bf16 (or fp32 for backend.matmul = fp32)
// rate of a known GPU, else the measured GEMM rate.
PeakRate peak_rate(Backend& backend);
// Device memory in use on the backend's device (cuda: total - free, all processes); 0 on the cpu.
std::size_t device_memory_used(Backend& backend);
// Free device memory for what this rank is about to allocate (cuda); nullopt for host memory.
std::optional<std::size_t> device_memory_free(Backend& backend);

template <typename T>
Buffer<T>::Buffer(Backend& owner, std::size_t count) : owner_(&owner), count_(count) {
  if (count_ > 0) data_ = static_cast<T*>(owner.allocate_bytes(count_ * sizeof(T)));
}

template <typename T>
void Buffer<T>::release() {
  if (data_ != nullptr) owner_->free_bytes(data_);
  data_ = nullptr;
  count_ = 0;
}

// The deck's [backend]: cpu (threads <= 0: OpenMP's default) or cuda; matmul auto (bf16 on cuda, fp32 on
// cpu), bf16 (cuda only) or fp32. Throws InputError naming the key for what this build or machine cannot
// do (no CUDA backend, no visible GPU, bf16 on the cpu).
std::unique_ptr<Backend> make_backend(const config::BackendOptions& options);
// The CPU backend with fp32 GEMMs (tests, benchmarks).
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace mics::backends
