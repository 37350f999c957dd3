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

std::unique_ptr<Backend> make_backend(std::string_view device, int threads, std::string_view matmul) {
  if (std::getenv("MICS_CUDA_MATMUL") != nullptr) {  // read by earlier versions: refuse rather than ignore it
    throw Error("MICS_CUDA_MATMUL is no longer read: set backend.matmul = bf16 | fp32 in the deck instead");
  }
  if (matmul != "auto" && matmul != "bf16" && matmul != "fp32") {
    throw Error("backend.matmul = " + std::string(matmul) + " is not one of auto, bf16, fp32");
  }
  if (device == "cpu") {
    if (matmul == "bf16") throw Error("backend.matmul = bf16 needs backend.device = cuda (the cpu backend is fp32)");
    return std::make_unique<cpu::CpuBackend>(threads);
  }
  if (device == "cuda") {
#if defined(MICS_WITH_CUDA)
    return cuda::make_cuda_backend(matmul == "fp32" ? cuda::MatmulPrecision::fp32 : cuda::MatmulPrecision::bf16);
#else
    throw Error("backend.device = cuda: this build has no CUDA compute backend (use backend.device = cpu)");
#endif
  }
  throw Error("unknown device '" + std::string(device) + "' (known: cpu, cuda)");
}

}  // namespace mics::backends
