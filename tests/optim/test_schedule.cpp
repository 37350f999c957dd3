// Learning-rate schedule and clipping factor against hand-computed values.
#include "catch.hpp"
#include <cmath>

#include "mics/optim/schedule.hpp"
#include "mics/util/error.hpp"

using mics::optim::clip_scale;
using mics::optim::LrSchedule;

TEST_CASE("schedule: warmup is linear and reaches lr at its last step", "[optim][schedule]") {
  const LrSchedule s(1e-3f, 10, 111, 0.1f);
  CHECK(s.lr_at(0) == Approx(1e-4));  // (0+1)/10
  CHECK(s.lr_at(4) == Approx(5e-4));
  CHECK(s.lr_at(9) == Approx(1e-3));
}

TEST_CASE("schedule: cosine from lr to the floor at the final step", "[optim][schedule]") {
  // warmup 10, final step 110: 100 decay steps.
  const LrSchedule s(1e-3f, 10, 111, 0.1f);
  CHECK(s.lr_at(10) == Approx(1e-3));
  // Halfway (step 60): cos(pi/2) = 0, so lr = min + (lr - min)/2 = 1e-4 + 4.5e-4.
  CHECK(s.lr_at(60) == Approx(5.5e-4));
  // A quarter (step 35): coeff = (1 + cos(pi/4))/2 = 0.853553...
  CHECK(s.lr_at(35) == Approx(1e-4 + 0.8535533905932737 * 9e-4));
  CHECK(s.lr_at(110) == Approx(1e-4));
  CHECK(s.lr_at(500) == Approx(1e-4));  // past the end: the floor
  // Monotone after warmup.
  for (int step = 10; step < 110; ++step) CHECK(s.lr_at(step + 1) <= s.lr_at(step));
}

TEST_CASE("schedule: no warmup and a constant schedule", "[optim][schedule]") {
  const LrSchedule cosine(2.0f, 0, 3, 0.0f);  // steps 0, 1, 2: 2, 1, 0
  CHECK(cosine.lr_at(0) == Approx(2.0));
  CHECK(cosine.lr_at(1) == Approx(1.0));
  CHECK(cosine.lr_at(2) == Approx(0.0).margin(1e-7));
  const LrSchedule constant(0.5f, 0, 100, 1.0f);
  CHECK(constant.lr_at(0) == Approx(0.5));
  CHECK(constant.lr_at(73) == Approx(0.5));
}

TEST_CASE("schedule: bad settings are errors", "[optim][schedule]") {
  CHECK_THROWS_AS(LrSchedule(-1.0f, 0, 10, 0.1f), mics::Error);
  CHECK_THROWS_AS(LrSchedule(1.0f, -1, 10, 0.1f), mics::Error);
  CHECK_THROWS_AS(LrSchedule(1.0f, 0, 0, 0.1f), mics::Error);
  CHECK_THROWS_WITH(LrSchedule(1.0f, 0, 10, 1.5f), Catch::Contains("min lr ratio"));
}

TEST_CASE("clip_scale: off, under and over the limit", "[optim][clip]") {
  CHECK(clip_scale(100.0, 0.0) == 1.0f);  // off
  CHECK(clip_scale(0.5, 1.0) == 1.0f);    // under: untouched
  CHECK(clip_scale(4.0, 1.0) == Approx(0.25).epsilon(1e-6));
  CHECK(clip_scale(2.0, 1.0) * 2.0 == Approx(1.0).epsilon(1e-6));  // the clipped norm is max_norm
}
