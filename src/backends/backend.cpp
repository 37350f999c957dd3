// The backend factory: the one place that knows which backends this build has.
#include "mics/backends/backend.hpp"

#include <cstdlib>
#include <string>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/util/error.hpp"
#if defined(MICS_WITH_CUDA)
#include "mics/backends/cuda/cuda_backend.hpp"
#endif

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

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return make_backend(config::BackendOptions{config::Device::cpu, threads});
}

}  // namespace mics::backends
