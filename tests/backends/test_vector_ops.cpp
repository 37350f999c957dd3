// The flat-buffer ops the engine uses on parameter and gradient shards.
#include "catch.hpp"

#include <cmath>

#include "mics/backends/cpu/adamw.hpp"
#include "mics/backends/cpu/cpu_backend.hpp"
#include "reference_ops.hpp"

using namespace mics;
using namespace mics::testing;
using backends::cpu::CpuBackend;

TEST_CASE("fill, zero, copy, axpy, scale", "[backends][vector]") {
  CpuBackend be(1);
  const std::size_t n = 1001;  // odd: no vector-width assumptions
  std::mt19937 rng(8);
  auto x = random_floats(n, rng), y = random_floats(n, rng);
  auto d_x = upload(be, x), d_y = upload(be, y);
  auto d_z = be.alloc<float>(n);

  be.fill(d_z.data(), n, 2.5f);
  for (float v : download(be, d_z.data(), n)) REQUIRE(v == 2.5f);
  be.zero(d_z.data(), n);
  for (float v : download(be, d_z.data(), n)) REQUIRE(v == 0.0f);
  be.copy(d_z.data(), d_x.data(), n);
  REQUIRE(download(be, d_z.data(), n) == x);

  be.axpy(d_y.data(), -0.5f, d_x.data(), n);  // one fp32 multiply-add per element: within 1 ulp of fp32
  auto got = download(be, d_y.data(), n);
  for (std::size_t i = 0; i < n; i++) REQUIRE(got[i] == Approx(y[i] - 0.5f * x[i]).epsilon(1e-6).margin(1e-6));

  be.scale(d_x.data(), 4.0f, n);  // a power of two: exact
  got = download(be, d_x.data(), n);
  for (std::size_t i = 0; i < n; i++) REQUIRE(got[i] == 4.0f * x[i]);
}

TEST_CASE("sum_squares accumulates in double", "[backends][vector]") {
  CpuBackend be(1);
  // 2e7 ones: an fp32 accumulator stops growing at 2^24 = 16,777,216; double counts exactly
  const std::size_t n = 20'000'000;
  auto d = be.alloc<float>(n);
  be.fill(d.data(), n, 1.0f);
  CHECK(be.sum_squares(d.data(), n) == 20'000'000.0);
  be.fill(d.data(), 4, 3.0f);
  CHECK(be.sum_squares(d.data(), 4) == 36.0);
}

TEST_CASE("adamw_count_nonfinite counts what adamw would break and changes nothing", "[backends][vector]") {
  CpuBackend be(1);
  const std::size_t n = 1001;
  std::mt19937 rng(11);
  auto p = random_floats(n, rng), g = random_floats(n, rng), m = random_floats(n, rng), v = random_floats(n, rng);
  for (float& x : v) x = x * x;
  // Elements that break, each a different way: a gradient whose square overflows the second moment, a NaN
  // gradient, an infinite moment; with the large learning rate also parameters pushed past FLT_MAX (p[3],
  // and p[10] through weight decay).
  p[3] = 3.3e38f;
  g[500] = 1e30f;
  g[777] = std::nanf("");
  m[1000] = INFINITY;
  p[10] = 1e30f;
  const backends::AdamWStep hp{1e-3f, 0.9f, 0.95f, 1e-8f, 0.5f, 1};
  const backends::AdamWStep big_lr{3e37f, 0.9f, 0.95f, 1e-8f, 0.5f, 1};
  auto d_p = upload(be, p), d_g = upload(be, g), d_m = upload(be, m), d_v = upload(be, v);

  for (const backends::AdamWStep& step : {hp, big_lr}) {
    be.adamw_count_nonfinite(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, step);
    const std::uint64_t counted = be.take_nonfinite_count();
    REQUIRE(be.take_nonfinite_count() == 0u);  // taking resets
    // Nothing changed...
    REQUIRE(download(be, d_p.data(), n) == p);
    REQUIRE(download(be, d_m.data(), n) == m);
    // ...and the count is what the update itself then leaves behind.
    auto q = p, mm = m, vv = v;
    backends::cpu::adamw(q.data(), g.data(), mm.data(), vv.data(), n, step);
    std::uint64_t broken = 0;
    for (std::size_t i = 0; i < n; ++i)
      broken += !(std::isfinite(q[i]) && std::isfinite(mm[i]) && std::isfinite(vv[i]));
    INFO("lr " << step.lr);
    CHECK(counted == broken);
    CHECK(counted >= 3u);
  }
}
