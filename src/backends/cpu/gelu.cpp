// GELU, tanh approximation (GPT-2), computed through the identity 0.5 (1 + tanh u) = sigmoid(2u): one expf
// per element (much cheaper than tanhf) and no cancellation near u = 0. The exp is fast_exp, so the loops
// vectorise (see fast_exp.hpp for its error bound).
#include <cmath>
#include <cstddef>

#include "mics/backends/cpu/fast_exp.hpp"
#include "mics/backends/cpu/kernels.hpp"

namespace mics::backends::cpu {
namespace {
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;
}  // namespace

// out = 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
void gelu_forward(float* out, const float* inp, std::size_t n) {
#pragma omp parallel for simd schedule(static)
  for (std::size_t i = 0; i < n; i++) {
    const float x = inp[i];
    const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    out[i] = x / (1.0f + fast_exp(-2.0f * u));
  }
}

// d/dx [x s(2u)] = s + x * 2 s (1 - s) du/dx, s = sigmoid(2u), du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
#pragma omp parallel for simd schedule(static)
  for (std::size_t i = 0; i < n; i++) {
    const float x = inp[i];
    const float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    const float s = 1.0f / (1.0f + fast_exp(-2.0f * u));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    dinp[i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
  }
}

}  // namespace mics::backends::cpu
