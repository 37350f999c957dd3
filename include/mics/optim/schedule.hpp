// Learning-rate schedule and gradient clipping: the scalar side of the optimizer step.
#pragma once

namespace mics::optim {

// Linear warmup, then cosine decay to a floor (as llm.c and nanoGPT train GPT-2).
//   step < warmup_steps:   lr * (step + 1) / warmup_steps   (the first step already moves)
//   afterwards:            cosine from lr at step warmup_steps down to min_lr_ratio * lr at the
//                          final step (total_steps - 1); steps past the end stay at the floor.
class LrSchedule {
 public:
  // Throws mics::Error on lr < 0, warmup_steps < 0, total_steps < 1 or min_lr_ratio outside [0, 1].
  LrSchedule(float lr, int warmup_steps, int total_steps, float min_lr_ratio);

  float lr_at(int step /* 0-based */) const;

 private:
  float lr_;
  int warmup_steps_;
  int total_steps_;
  float min_lr_ratio_;
};

// Factor to multiply every gradient by so the global norm is at most max_norm:
// min(1, max_norm / (grad_norm + 1e-6)); max_norm <= 0 turns clipping off (returns 1).
// A non-finite grad_norm is the caller's to detect (an overflowed step is skipped, not clipped).
float clip_scale(double grad_norm, double max_norm);

}  // namespace mics::optim
