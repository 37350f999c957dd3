// The backend factory: the one place that knows which backends this build has.
#include "mics/backends/backend.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/backends/transport.hpp"
#include "mics/util/error.hpp"
#if defined(MICS_WITH_CUDA)
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#endif
#include <omp.h>

namespace mics::backends {

std::unique_ptr<Backend> make_backend(const config::BackendOptions& options) {
  if (std::getenv("MICS_CUDA_MATMUL") != nullptr) {  // read by earlier versions: refuse rather than ignore it
    throw InputError("MICS_CUDA_MATMUL is no longer read: set backend.matmul = bf16 | fp32 in the deck instead");
  }
  if (options.device == config::Device::cpu) {
    if (options.matmul == config::Matmul::bf16)
      throw InputError("backend.matmul = bf16 needs backend.device = cuda (the cpu backend is fp32)");
    return std::make_unique<cpu::CpuBackend>(options.threads);
  }
#if defined(MICS_WITH_CUDA)
  return cuda::make_cuda_backend(options.matmul == config::Matmul::fp32 ? cuda::MatmulPrecision::fp32
                                                                       : cuda::MatmulPrecision::bf16);
#else
  throw InputError("backend.device = cuda: this build has no CUDA compute backend (use backend.device = cpu)");
#endif
}

namespace {
class BackendMemory final : public comm::BenchMemory {
 public:
  explicit BackendMemory(Backend& backend) : backend_(backend) {}
  std::string_view name() const override { return backend_.name(); }
  void* allocate(std::size_t bytes) override { return backend_.allocate_bytes(bytes); }
  void release(void* memory) noexcept override { backend_.free_bytes(memory); }
  void copy_from_host(void* dst, const void* host_src, std::size_t bytes) override {
    backend_.copy_from_host(dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override {
    backend_.copy_to_host(host_dst, src, bytes);
  }
  void synchronize() override { backend_.synchronize(); }

 private:
  Backend& backend_;
};
}  // namespace

std::unique_ptr<comm::BenchMemory> bench_memory(Backend& backend) { return std::make_unique<BackendMemory>(backend); }

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return make_backend(config::BackendOptions{config::Device::cpu, threads});
}

PeakRate measure_matmul_rate(Backend& backend, int n, double seconds) {
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  Buffer<float> a = backend.alloc<float>(nn), w = backend.alloc<float>(nn), out = backend.alloc<float>(nn);
  backend.fill(a.data(), nn, 0.5f);
  backend.fill(w.data(), nn, 0.25f);
  backend.matmul_forward(out.data(), a.data(), w.data(), nullptr, n, n, n);  // warm up
  backend.synchronize();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  int calls = 0;
  double elapsed = 0;
  while (calls < 3 || elapsed < seconds) {
    backend.matmul_forward(out.data(), a.data(), w.data(), nullptr, n, n, n);
    backend.synchronize();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  PeakRate rate;
  rate.flops_per_s = 2.0 * static_cast<double>(nn) * n * calls / elapsed;
  char text[160];
  if (backend.name() == "cpu")
    std::snprintf(text, sizeof(text), "measured fp32 sgemm %d^3 on %d threads of this rank", n, omp_get_max_threads());
  else
    std::snprintf(text, sizeof(text), "measured %s GEMM %d^3", std::string(backend.name()).c_str(), n);
  rate.source = text;
  return rate;
}

PeakRate peak_rate(Backend& backend) {
#if defined(MICS_WITH_CUDA)
  if (auto* gpu = dynamic_cast<cuda::CudaBackend*>(&backend)) {
    const bool bf16 = gpu->precision() == cuda::MatmulPrecision::bf16;
    std::string name;
    if (const double peak = cuda::datasheet_peak_flops(gpu->device(), bf16, name); peak > 0)
      return PeakRate{peak, name + (bf16 ? " dense bf16" : " fp32") + " peak (datasheet)"};
    PeakRate measured = measure_matmul_rate(backend, 4096, 0.5);
    measured.source += " (" + name + " is not in the datasheet table)";
    return measured;
  }
#endif
  return measure_matmul_rate(backend);
}

std::size_t device_memory_used([[maybe_unused]] Backend& backend) {
#if defined(MICS_WITH_CUDA)
  if (auto* gpu = dynamic_cast<cuda::CudaBackend*>(&backend)) return cuda::device_memory_used(gpu->device());
#endif
  return 0;
}

std::optional<std::size_t> device_memory_free([[maybe_unused]] Backend& backend) {
#if defined(MICS_WITH_CUDA)
  if (auto* gpu = dynamic_cast<cuda::CudaBackend*>(&backend)) return cuda::device_memory_free(gpu->device());
#endif
  return std::nullopt;
}

}  // namespace mics::backends
