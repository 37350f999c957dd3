// The flat-buffer ops the engine uses on parameter and gradient shards.
#include "catch.hpp"

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
