// A vectorisable expf for the CPU kernels' hot loops (softmax of the cross-entropy and of attention, GELU).
//
// glibc's expf is a scalar call inside those loops (its SIMD variants in libmvec are only declared under
// -ffast-math), which keeps the loops from vectorising. This is the classic Cephes expf scheme written as
// straight-line float/int arithmetic that the compiler turns into vector code inside `omp simd` loops:
//   n = round(x log2 e),  r = x - n ln2 (ln2 split in two parts, Cody-Waite, so r is exact to ~1 ulp),
//   e^r by a degree-6 polynomial on |r| <= ln2/2,  result = e^r * 2^n (n added to the exponent bits).
// Accuracy: relative error at most 8.5e-8 (about 1 ulp) for every float x whose e^x is a normal float,
// checked exhaustively against double-precision exp over all 2.2e9 floats in [kExpMin, kExpMax]. Below
// kExpMin (e^x < FLT_MIN = 1.18e-38) it returns 0, an absolute error under 1.2e-38; above kExpMax it is
// clamped there (e^88 = 1.65e38, finite), which the kernels only meet in saturated sigmoid tails where the
// result is the same as with +inf. NaN propagates. The kernels' outputs therefore stay within a few float
// ulps of the libm versions, far inside the finite-difference and reference tolerances of the tests.
#pragma once
#include <bit>
#include <cstdint>

namespace mics::backends::cpu {

inline constexpr float kExpMin = -87.33654f;  // ln(FLT_MIN)
inline constexpr float kExpMax = 88.0f;       // n = round(x log2 e) <= 127 keeps 2^n a normal float

#pragma omp declare simd notinbranch
inline float fast_exp(float x) {
  const float xc = x < kExpMin ? kExpMin : (x > kExpMax ? kExpMax : x);
  // round to nearest by the 1.5 * 2^23 shifter: exact for |x log2 e| < 2^22
  constexpr float kShifter = 12582912.0f;
  const float nf = (xc * 1.44269504088896341f + kShifter) - kShifter;
  float r = xc - nf * 0.693359375f;  // ln2, high part: exact in float for |n| < 2^9
  r = r - nf * -2.12194440e-4f;      // ln2, low part
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  const auto n = static_cast<std::int32_t>(nf);
  const float scale = std::bit_cast<float>(static_cast<std::int32_t>((n + 127) << 23));
  const float y = er * scale;
  return x < kExpMin ? 0.0f : (x != x ? x : y);
}

}  // namespace mics::backends::cpu
