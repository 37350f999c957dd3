// CudaBackend: device memory, the compute stream, and dispatch to the kernel launchers.
#include "mics/backends/cuda/cuda_backend.hpp"

#include <string>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

namespace {
int choose_device(int requested) {
  if (requested < 0) return device_for_this_process();  // throws when no device is visible
  const int count = device_count();
  if (requested >= count) {
    throw InputError("CUDA device " + std::to_string(requested) + " requested but only " + std::to_string(count) +
                " are visible");
  }
  return requested;
}

// cudaSetDevice before any other member is built: the stream and handle belong to the current device.
int select(int requested) {
  const int device = choose_device(requested);
  CUDA_CHECK(cudaSetDevice(device));
  return device;
}
}  // namespace

CudaBackend::CudaBackend(const CudaOptions& options) : device_(select(options.device)) {
  CUBLAS_CHECK(cublasSetStream(cublas_.get(), stream_.get()));
  gemm_ = GemmContext{cublas_.get(), stream_.get(), options.precision};
  sum_scratch_ = DeviceBuffer<double>(sum_squares_workspace() + 1);
  sum_host_ = PinnedBuffer<double>(1);
  nonfinite_count_ = DeviceBuffer<unsigned long long>(1);
  nonfinite_host_ = PinnedBuffer<unsigned long long>(1);
  CUDA_CHECK(cudaMemsetAsync(nonfinite_count_.data(), 0, sizeof(unsigned long long), stream_.get()));
}

CudaBackend::~CudaBackend() { CUDA_WARN(cudaStreamSynchronize(stream_.get())); }

float* CudaBackend::workspace(std::size_t floats) {
  workspace_.reserve(floats);
  return workspace_.data();
}

// --- memory ------------------------------------------------------------------------------------------

void* CudaBackend::allocate_bytes(std::size_t bytes) {
  void* ptr = nullptr;
  CUDA_CHECK(cudaMalloc(&ptr, bytes == 0 ? 256 : bytes));  // 256-byte aligned
  return ptr;
}

void CudaBackend::free_bytes(void* ptr) noexcept {
  if (ptr != nullptr) CUDA_WARN(cudaFree(ptr));
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
}

void CudaBackend::copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream_.get()));
  stream_.synchronize();  // the caller may reuse host_src as soon as we return
}

void CudaBackend::synchronize() { stream_.synchronize(); }

// --- vector ops ----------------------------------------------------------------------------------------

void CudaBackend::fill(float* x, std::size_t n, float value) { cuda::fill(stream_.get(), x, n, value); }

void CudaBackend::copy(float* dst, const float* src, std::size_t n) {
  if (n == 0 || dst == src) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_.get()));
}

void CudaBackend::axpy(float* y, float a, const float* x, std::size_t n) { cuda::axpy(stream_.get(), y, a, x, n); }

void CudaBackend::scale(float* x, float a, std::size_t n) { cuda::scale(stream_.get(), x, a, n); }

double CudaBackend::sum_squares(const float* x, std::size_t n) {
  double* result = sum_scratch_.data() + sum_squares_workspace();
  cuda::sum_squares(stream_.get(), result, x, n, sum_scratch_.data());
  CUDA_CHECK(cudaMemcpyAsync(sum_host_.data(), result, sizeof(double), cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
  return *sum_host_.data();
}

void CudaBackend::adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp) {
  cuda::adamw(stream_.get(), params, grads, m, v, n, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
              hp.m_scale(), hp.v_scale(), hp.grad_scale);
}

void CudaBackend::adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v,
                                        std::size_t n, const AdamWStep& hp) {
  cuda::adamw_count_nonfinite(stream_.get(), nonfinite_count_.data(), params, grads, m, v, n, hp.lr, hp.beta1,
                              hp.beta2, hp.eps, hp.weight_decay, hp.m_scale(), hp.v_scale(), hp.grad_scale);
}

std::uint64_t CudaBackend::take_nonfinite_count() {
  CUDA_CHECK(cudaMemcpyAsync(nonfinite_host_.data(), nonfinite_count_.data(), sizeof(unsigned long long),
                             cudaMemcpyDeviceToHost, stream_.get()));
  CUDA_CHECK(cudaMemsetAsync(nonfinite_count_.data(), 0, sizeof(unsigned long long), stream_.get()));
  stream_.synchronize();
  return *nonfinite_host_.data();
}

void CudaBackend::to_bf16(bf16* dst, const float* src, std::size_t n) {
  cuda::f32_to_bf16(stream_.get(), reinterpret_cast<std::uint16_t*>(dst), src, n);
}

void CudaBackend::from_bf16(float* dst, const bf16* src, std::size_t n) {
  cuda::bf16_to_f32(stream_.get(), dst, reinterpret_cast<const std::uint16_t*>(src), n);
}

// --- GPT-2 ops -------------------------------------------------------------------------------------------

void CudaBackend::encoder_forward(float* out, const std::int32_t* inp, const float* wte, const float* wpe, int B,
                                  int T, int C) {
  cuda::encoder_forward(stream_.get(), out, inp, wte, wpe, B, T, C);
}

void CudaBackend::encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* inp, int B,
                                   int T, int C) {
  const int N = B * T;
  const std::size_t bytes = cuda::encoder_backward_workspace_bytes(N);
  cuda::encoder_backward_wte(stream_.get(), dwte, dout, inp, N, C, workspace((bytes + sizeof(float) - 1) / sizeof(float)),
                            bytes);
  cuda::encoder_backward_wpe(stream_.get(), dwpe, dout, B, T, C);
}

void CudaBackend::layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                    const float* bias, int N, int C) {
  cuda::layernorm_forward(stream_.get(), out, mean, rstd, inp, weight, bias, N, C);
}

void CudaBackend::layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                     const float* weight, const float* mean, const float* rstd, int N, int C) {
  float* scratch = workspace(layernorm_backward_workspace(N, C));
  cuda::layernorm_backward(stream_.get(), dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C, scratch);
}

void CudaBackend::matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                                 int OC) {
  cuda::matmul_forward(gemm_, out, inp, weight, bias, N, C, OC);
}

void CudaBackend::matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                  const float* weight, int N, int C, int OC) {
  float* scratch = workspace(matmul_backward_workspace(N, OC));
  cuda::matmul_backward(gemm_, dinp, dweight, dbias, dout, inp, weight, N, C, OC, scratch);
}

void CudaBackend::attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  cuda::attention_forward(gemm_, out, att, qkv, B, T, C, NH, workspace(attention_workspace(B, T, C, NH)));
}

void CudaBackend::attention_decode(float* out, const float* q, const float* k, const float* v, int T, int C, int NH,
                                   int ld) {
  cuda::attention_decode(stream_.get(), out, q, k, v, T, C, NH, ld);
}

void CudaBackend::attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, int B,
                                     int T, int C, int NH) {
  cuda::attention_backward(gemm_, dqkv, dout, qkv, att, B, T, C, NH, workspace(attention_workspace(B, T, C, NH)));
}

void CudaBackend::gelu_forward(float* out, const float* inp, std::size_t n) {
  cuda::gelu_forward(stream_.get(), out, inp, n);
}

void CudaBackend::gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
  cuda::gelu_backward(stream_.get(), dinp, inp, dout, n);
}

void CudaBackend::residual_forward(float* out, const float* a, const float* b, std::size_t n) {
  cuda::add(stream_.get(), out, a, b, n);
}

void CudaBackend::crossentropy_forward(float* losses, float* inv_sum, float* logits, const std::int32_t* targets,
                                       int N, int V, int Vp) {
  cuda::crossentropy_forward(stream_.get(), losses, inv_sum, logits, targets, N, V, Vp);
}

void CudaBackend::crossentropy_backward(float* logits, const float* inv_sum, const std::int32_t* targets, float dloss,
                                        int N, int V, int Vp) {
  cuda::crossentropy_backward(stream_.get(), logits, inv_sum, targets, dloss, N, V, Vp);
}

// --- factory ---------------------------------------------------------------------------------------------

std::unique_ptr<Backend> make_cuda_backend(MatmulPrecision precision) {
  return std::make_unique<CudaBackend>(CudaOptions{-1, precision});
}

}  // namespace mics::backends::cuda
