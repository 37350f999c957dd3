// The CUDA backend: device memory, every op as a CUDA kernel or a cuBLAS GEMM, all on one compute
// stream (synchronize() waits for it). fp32 storage throughout; MatmulPrecision picks exact fp32 GEMMs or
// bf16 tensor cores with fp32 accumulation. Needs only CUDA (no MPI): the collectives that move this
// backend's memory live in mics_cuda_comm (nccl_transport.hpp, host_staged_transport.hpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "mics/backends/backend.hpp"
#include "mics/backends/cuda/kernels.hpp"
#include "mics/backends/cuda/raii.hpp"
#include "mics/util/bf16.hpp"

namespace mics::backends::cuda {

struct CudaOptions {
  int device = -1;  // < 0: device_for_this_process() (node-local rank modulo device count)
  MatmulPrecision precision = MatmulPrecision::fp32;
};

class CudaBackend final : public Backend {
 public:
  // Selects the device (cudaSetDevice on this thread), creates the stream and cuBLAS handle.
  // Throws mics::Error when no device is visible.
  explicit CudaBackend(const CudaOptions& options = {});
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  int device() const { return device_; }
  MatmulPrecision precision() const { return gemm_.precision; }
  void set_precision(MatmulPrecision precision) { gemm_.precision = precision; }
  // The compute stream every op runs on: collectives order their work against it with events.
  cudaStream_t stream() const { return stream_.get(); }

  void* allocate_bytes(std::size_t bytes) override;
  void free_bytes(void* ptr) noexcept override;
  // Both copies return when the data has arrived (they order after every op issued before them).
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, std::size_t bytes) override;
  void synchronize() override;

  void fill(float* x, std::size_t n, float value) override;
  void copy(float* dst, const float* src, std::size_t n) override;
  void axpy(float* y, float a, const float* x, std::size_t n) override;
  void scale(float* x, float a, std::size_t n) override;
  double sum_squares(const float* x, std::size_t n) override;  // waits for the result
  void adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp) override;
  void adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v, std::size_t n,
                             const AdamWStep& hp) override;
  std::uint64_t take_nonfinite_count() override;  // waits for the count

  // Half-size parameter gathers: narrow a shard to bf16 before the all-gather, widen after it.
  void to_bf16(bf16* dst, const float* src, std::size_t n) override;
  void from_bf16(float* dst, const bf16* src, std::size_t n) override;

  void encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override;
  // Buckets positions by token on the device (stable sort) and sums each bucket in position order:
  // deterministic, no atomics, no host round trip.
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
  float* workspace(std::size_t floats);  // grow-only scratch shared by the ops (one stream: no overlap)

  int device_ = 0;
  Stream stream_;
  CublasHandle cublas_;
  GemmContext gemm_;
  DeviceBuffer<float> workspace_;
  DeviceBuffer<double> sum_scratch_;     // sum_squares partials, then the result
  PinnedBuffer<double> sum_host_;
  DeviceBuffer<unsigned long long> nonfinite_count_;  // zeroed by take_nonfinite_count()
  PinnedBuffer<unsigned long long> nonfinite_host_;
};

// The factory entry for make_backend("cuda", ...) with the deck's backend.matmul; throws mics::Error
// "backend.device = cuda but no CUDA device is visible" on a machine without one.
std::unique_ptr<Backend> make_cuda_backend(MatmulPrecision precision);

}  // namespace mics::backends::cuda
