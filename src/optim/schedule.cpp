#include "mics/optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "mics/util/error.hpp"

namespace mics::optim {

LrSchedule::LrSchedule(float lr, int warmup_steps, int total_steps, float min_lr_ratio)
    : lr_(lr), warmup_steps_(warmup_steps), total_steps_(total_steps), min_lr_ratio_(min_lr_ratio) {
  if (!(lr >= 0.0f)) throw InputError("learning-rate schedule: lr must be >= 0, got " + std::to_string(lr));
  if (warmup_steps < 0)
    throw InputError("learning-rate schedule: warmup steps must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1)
    throw InputError("learning-rate schedule: total steps must be >= 1, got " + std::to_string(total_steps));
  if (!(min_lr_ratio >= 0.0f && min_lr_ratio <= 1.0f))
    throw InputError("learning-rate schedule: min lr ratio must be in [0, 1], got " + std::to_string(min_lr_ratio));
}

float LrSchedule::lr_at(int step) const {
  if (step < warmup_steps_) {
    return lr_ * static_cast<float>(step + 1) / static_cast<float>(warmup_steps_);
  }
  const int final_step = total_steps_ - 1;
  const int decay_steps = final_step - warmup_steps_;
  const double min_lr = static_cast<double>(lr_) * min_lr_ratio_;
  if (decay_steps <= 0) return step <= final_step ? lr_ : static_cast<float>(min_lr);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps_) / decay_steps);
  const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));  // 1 -> 0
  return static_cast<float>(min_lr + coeff * (static_cast<double>(lr_) - min_lr));
}

float clip_scale(double grad_norm, double max_norm) {
  if (max_norm <= 0.0) return 1.0f;
  return static_cast<float>(std::min(1.0, max_norm / (grad_norm + 1e-6)));
}

}  // namespace mics::optim
