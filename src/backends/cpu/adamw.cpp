#include "mics/backends/cpu/adamw.hpp"

#include <cmath>
#include <cstdint>

namespace mics::backends::cpu {

namespace {

// The per-step constants of an update, hoisted once.
struct Constants {
  float m_scale, v_scale, beta1, beta2, eps, lr, wd, grad_scale, one_minus_beta1, one_minus_beta2;
  explicit Constants(const AdamWStep& hp)
      : m_scale(hp.m_scale()),
        v_scale(hp.v_scale()),
        beta1(hp.beta1),
        beta2(hp.beta2),
        eps(hp.eps),
        lr(hp.lr),
        wd(hp.weight_decay),
        grad_scale(hp.grad_scale),
        one_minus_beta1(1.0f - hp.beta1),
        one_minus_beta2(1.0f - hp.beta2) {}
};

struct Updated {
  float p, m, v;
};

// One element's update: the apply pass and the look-ahead count share it, so both see the same values.
inline Updated update_element(const Constants& c, float p, float g_raw, float m, float v) {
  const float g = g_raw * c.grad_scale;
  const float mi = c.beta1 * m + c.one_minus_beta1 * g;
  const float vi = c.beta2 * v + c.one_minus_beta2 * g * g;
  return {p - c.lr * ((mi * c.m_scale) / (std::sqrt(vi * c.v_scale) + c.eps) + c.wd * p), mi, vi};
}

}  // namespace

void adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp) {
  const Constants c(hp);
  const auto count = static_cast<std::int64_t>(n);

  // Memory-bound: each element reads p, g, m, v once and writes p, m, v once. Blocks of kBlock elements,
  // each prefetching its four streams kAhead elements ahead: the hardware prefetchers alone leave the
  // seven-stream loop ~10% short of the machine's bandwidth.
  constexpr std::int64_t kBlock = 16, kAhead = 256;
  auto update = [&](std::int64_t i) {
    const Updated u = update_element(c, params[i], grads[i], m[i], v[i]);
    m[i] = u.m;
    v[i] = u.v;
    params[i] = u.p;
  };
  const std::int64_t blocks = count / kBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = b * kBlock;
    const std::int64_t ahead = begin + kAhead < count ? begin + kAhead : count - 1;
    __builtin_prefetch(grads + ahead, 0);
    __builtin_prefetch(params + ahead, 1);
    __builtin_prefetch(m + ahead, 1);
    __builtin_prefetch(v + ahead, 1);
#pragma omp simd
    for (std::int64_t i = begin; i < begin + kBlock; ++i) update(i);
  }
  for (std::int64_t i = blocks * kBlock; i < count; ++i) update(i);
}

std::uint64_t adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v,
                                    std::size_t n, const AdamWStep& hp) {
  const Constants c(hp);
  const auto count = static_cast<std::int64_t>(n);
  std::uint64_t bad = 0;
  // Four read streams and no writes: about 40% of the apply pass's memory traffic.
#pragma omp parallel for simd schedule(static) reduction(+ : bad)
  for (std::int64_t i = 0; i < count; ++i) {
    const Updated u = update_element(c, params[i], grads[i], m[i], v[i]);
    bad += !(std::isfinite(u.p) && std::isfinite(u.m) && std::isfinite(u.v));
  }
  return bad;
}

}  // namespace mics::backends::cpu
