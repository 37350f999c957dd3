// AdamW against values worked out by hand from the update rule, for two steps.
#include "catch.hpp"
#include <cmath>
#include <vector>

#include "mics/backends/cpu/adamw.hpp"

using mics::backends::AdamWStep;
using mics::backends::cpu::adamw;

namespace {
// Float arithmetic of ~10 operations on O(1) values: a few ulps of 1e-3-sized updates.
constexpr double kTol = 1e-6;
}  // namespace

TEST_CASE("adamw: two steps match the closed form", "[optim][adamw]") {
  // beta1 = 0.5, beta2 = 0.75 keep the bias corrections simple: 1/(1-b1^t) = 2, 4/3; 1/(1-b2^t) = 4, 16/7.
  const float lr = 0.1f, wd = 0.5f, eps = 1e-8f;
  std::vector<float> p = {1.0f, -2.0f, 0.5f};
  const std::vector<float> g1 = {0.5f, -1.0f, 0.0f};
  const std::vector<float> g2 = {1.5f, 1.0f, 2.0f};
  std::vector<float> m(3, 0.0f), v(3, 0.0f);

  // Step 1: m = g/2, v = g^2/4; mhat = g, vhat = g^2, so the Adam term is sign(g) (0 when g = 0).
  adamw(p.data(), g1.data(), m.data(), v.data(), 3, AdamWStep{lr, 0.5f, 0.75f, eps, wd, 1});
  // p1 = p0 - lr*(sign(g) + wd*p0)
  const double p1[3] = {1.0 - 0.1 * (1.0 + 0.5 * 1.0), -2.0 - 0.1 * (-1.0 + 0.5 * -2.0), 0.5 - 0.1 * (0.5 * 0.5)};
  const double m1[3] = {0.25, -0.5, 0.0};
  const double v1[3] = {0.0625, 0.25, 0.0};
  for (int i = 0; i < 3; ++i) {
    CHECK(p[i] == Approx(p1[i]).margin(kTol));
    CHECK(m[i] == Approx(m1[i]).margin(kTol));
    CHECK(v[i] == Approx(v1[i]).margin(kTol));
  }

  // Step 2: m2 = m1/2 + g2/2, v2 = 3/4 v1 + g2^2/4; mhat = m2*4/3, vhat = v2*16/7.
  adamw(p.data(), g2.data(), m.data(), v.data(), 3, AdamWStep{lr, 0.5f, 0.75f, eps, wd, 2});
  for (int i = 0; i < 3; ++i) {
    const double m2 = 0.5 * m1[i] + 0.5 * g2[i];
    const double v2 = 0.75 * v1[i] + 0.25 * g2[i] * g2[i];
    const double mhat = m2 * 4.0 / 3.0;
    const double vhat = v2 * 16.0 / 7.0;
    const double expected = p1[i] - 0.1 * (mhat / (std::sqrt(vhat) + 1e-8) + 0.5 * p1[i]);
    CHECK(m[i] == Approx(m2).margin(kTol));
    CHECK(v[i] == Approx(v2).margin(kTol));
    CHECK(p[i] == Approx(expected).margin(kTol));
  }
  // Element 0 worked fully by hand: m2 = 0.875, v2 = 0.609375, mhat = 7/6, vhat = 1.392857...,
  // p2 = 0.85 - 0.1*(7/6/1.1802 + 0.425) = 0.7086...
  CHECK(p[0] == Approx(0.85 - 0.1 * ((7.0 / 6.0) / std::sqrt(0.609375 * 16.0 / 7.0) + 0.425)).margin(kTol));
}

TEST_CASE("adamw: grad_scale clips the gradient inside the update", "[optim][adamw]") {
  // grad_scale = 0.25 on g must equal an unscaled step on g/4 (powers of two: exact in float), and
  // differ from the unscaled step on g (m, v see the scaled gradient).
  const std::vector<float> g = {0.8f, -1.6f, 0.4f};
  std::vector<float> quarter = {0.2f, -0.4f, 0.1f};
  std::vector<float> p_a = {1.0f, 2.0f, 3.0f}, m_a(3, 0.1f), v_a(3, 0.2f);
  std::vector<float> p_b = p_a, m_b = m_a, v_b = v_a;
  AdamWStep scaled{0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 3};
  scaled.grad_scale = 0.25f;
  adamw(p_a.data(), g.data(), m_a.data(), v_a.data(), 3, scaled);
  adamw(p_b.data(), quarter.data(), m_b.data(), v_b.data(), 3, AdamWStep{0.1f, 0.9f, 0.95f, 1e-8f, 0.1f, 3});
  CHECK(p_a == p_b);
  CHECK(m_a == m_b);
  CHECK(v_a == v_b);
  // By hand for element 0: m = 0.9*0.1 + 0.1*0.2 = 0.11, not 0.9*0.1 + 0.1*0.8 = 0.17.
  CHECK(m_a[0] == Approx(0.11).margin(kTol));
}

TEST_CASE("adamw: zero gradient with no decay leaves parameters alone", "[optim][adamw]") {
  std::vector<float> p(1000), g(1000, 0.0f), m(1000, 0.0f), v(1000, 0.0f);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<float>(i) * 0.001f - 0.5f;
  const std::vector<float> before = p;
  adamw(p.data(), g.data(), m.data(), v.data(), p.size(), AdamWStep{1e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, 1});
  CHECK(p == before);
}

TEST_CASE("adamw: a large array matches the element-wise rule everywhere", "[optim][adamw]") {
  // Exercises the OpenMP split: every element must get the same update as a scalar loop would.
  const std::size_t n = 100003;
  std::vector<float> p(n), g(n), m(n), v(n);
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = std::sin(static_cast<float>(i));
    g[i] = std::cos(static_cast<float>(i) * 0.7f);
    m[i] = 0.01f * g[i];
    v[i] = 0.001f * g[i] * g[i];
  }
  std::vector<float> p0 = p, m0 = m, v0 = v;
  const AdamWStep hp{3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 7};
  adamw(p.data(), g.data(), m.data(), v.data(), n, hp);
  const double c1 = 1.0 / (1.0 - std::pow(0.9, 7)), c2 = 1.0 / (1.0 - std::pow(0.95, 7));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double mi = 0.9 * m0[i] + 0.1 * g[i];
    const double vi = 0.95 * v0[i] + 0.05 * double(g[i]) * g[i];
    const double pi = p0[i] - 3e-4 * (mi * c1 / (std::sqrt(vi * c2) + 1e-8) + 0.1 * p0[i]);
    // The update is at most lr*(|mhat|/sqrt(vhat) + wd) ~ 1e-3 of an O(1) value: 1e-6 is float's room.
    if (std::abs(p[i] - pi) > kTol) ++bad;
  }
  CHECK(bad == 0);
}
