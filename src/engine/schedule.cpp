#include "mics/engine/schedule.hpp"

#include <array>
#include <utility>

namespace mics::engine {

namespace {

using model::Stage;

enum class Pass { training, evaluation };  // forward and backward, or forward only

enum class Step { forward, recompute, backward };

// Consecutive stages that need the same unit share one gather.
struct Run {
  int unit;
  std::vector<std::pair<Stage, Step>> stages;
};

std::vector<Run> make_runs(int layers, Pass pass, config::Recompute recompute) {
  std::vector<Run> runs;
  auto add = [&runs](const Stage& stage, Step step) {
    if (runs.empty() || runs.back().unit != stage.unit) runs.push_back({stage.unit, {}});
    runs.back().stages.emplace_back(stage, step);
  };
  for (const Stage& s : model::forward_stages(layers)) add(s, Step::forward);
  if (pass == Pass::training) {
    for (const Stage& s : model::backward_stages(layers)) {
      if (model::needs_recompute(s, layers, recompute)) add(s, Step::recompute);
      add(s, Step::backward);
    }
  }
  return runs;
}

// Builds the list, keeping track of what each gather slot holds across micro-steps.
class Builder {
 public:
  Builder(const ScheduleShape& shape, Pass pass) : shape_(shape), runs_(make_runs(shape.layers, pass, shape.recompute)) {
    last_backward_.assign(static_cast<std::size_t>(shape.layers) + 2, {-1, -1});
    for (std::size_t k = 0; k < runs_.size(); ++k)
      for (std::size_t i = 0; i < runs_[k].stages.size(); ++i)
        if (runs_[k].stages[i].second == Step::backward)
          last_backward_[static_cast<std::size_t>(runs_[k].unit)] = {static_cast<int>(k), static_cast<int>(i)};
  }

  // last_micro: the step's last micro-step, after whose reduce-scatters the replicas are summed.
  void micro_step(int micro, int micro_steps) {
    const bool last_micro = micro + 1 == micro_steps;
    ops_.push_back({Op::Kind::load_batch, micro});
    if (gather(micro, runs_[0].unit, 0)) ops_.push_back({Op::Kind::wait_gather, micro, runs_[0].unit, 0});
    int block_gradient = 0;
    int in_flight_reduce_scatter = -1;
    for (std::size_t k = 0; k < runs_.size(); ++k) {
      const Run& run = runs_[k];
      const int slot = shape_.sharded ? static_cast<int>(k % 2) : -1;
      const int next_slot = static_cast<int>((k + 1) % 2);
      const bool prefetched = k + 1 < runs_.size() && gather(micro, runs_[k + 1].unit, next_slot);
      bool gradient_begun = false;
      for (std::size_t i = 0; i < run.stages.size(); ++i) {
        const auto& [stage, step] = run.stages[i];
        if (step != Step::backward) {
          ops_.push_back({step == Step::forward ? Op::Kind::forward : Op::Kind::recompute, micro, run.unit, slot, stage});
          continue;
        }
        if (!gradient_begun && !unit_has_gradient(run.unit)) {
          int buffer = kAccumulatorGradient;
          if (shape_.sharded) {
            if (run.unit != 0) block_gradient ^= 1;
            buffer = run.unit == 0 ? kEmbeddingGradient : block_gradient;
          }
          if (shape_.sharded || micro == 0) ops_.push_back({Op::Kind::begin_gradient, micro, run.unit, buffer});
          begun_.push_back(run.unit);
        }
        gradient_begun = true;
        ops_.push_back({Op::Kind::backward, micro, run.unit, slot, stage});
        if (last_backward_[static_cast<std::size_t>(run.unit)] != std::pair{static_cast<int>(k), static_cast<int>(i)})
          continue;
        // The unit's gradient for this micro-step is complete.
        if (!shape_.sharded) {
          if (last_micro && shape_.replicated) ops_.push_back({Op::Kind::sum_over_replicas, micro, run.unit});
          continue;
        }
        finish_reduce_scatter(micro, last_micro, in_flight_reduce_scatter);  // it frees the staging buffer
        ops_.push_back({Op::Kind::reduce_scatter, micro, run.unit});
        in_flight_reduce_scatter = run.unit;
      }
      if (prefetched) ops_.push_back({Op::Kind::wait_gather, micro, runs_[k + 1].unit, next_slot});
    }
    finish_reduce_scatter(micro, last_micro, in_flight_reduce_scatter);
    ops_.push_back({Op::Kind::read_loss, micro});
    begun_.clear();
  }

  std::vector<Op> take() { return std::move(ops_); }

 private:
  // Emits a gather unless nothing is gathered or the slot already holds the unit; true when emitted.
  bool gather(int micro, int unit, int slot) {
    if (!shape_.sharded || holds_[static_cast<std::size_t>(slot)] == unit) return false;
    holds_[static_cast<std::size_t>(slot)] = unit;
    ops_.push_back({Op::Kind::gather, micro, unit, slot});
    return true;
  }
  void finish_reduce_scatter(int micro, bool last_micro, int& unit) {
    if (unit < 0) return;
    ops_.push_back({Op::Kind::wait_reduce_scatter, micro, unit});
    if (last_micro && shape_.replicated) ops_.push_back({Op::Kind::sum_over_replicas, micro, unit});
    unit = -1;
  }
  bool unit_has_gradient(int unit) const {
    for (int u : begun_)
      if (u == unit) return true;
    return false;
  }

  ScheduleShape shape_;
  std::vector<Run> runs_;
  std::vector<std::pair<int, int>> last_backward_;  // per unit: (run, stage index) of its last backward stage
  std::array<int, 2> holds_{-1, -1};
  std::vector<int> begun_;  // units whose gradient buffer this micro-step has begun
  std::vector<Op> ops_;
};

}  // namespace

std::string to_string(Op::Kind kind) {
  switch (kind) {
    case Op::Kind::load_batch: return "load_batch";
    case Op::Kind::gather: return "gather";
    case Op::Kind::wait_gather: return "wait_gather";
    case Op::Kind::forward: return "forward";
    case Op::Kind::recompute: return "recompute";
    case Op::Kind::begin_gradient: return "begin_gradient";
    case Op::Kind::backward: return "backward";
    case Op::Kind::reduce_scatter: return "reduce_scatter";
    case Op::Kind::wait_reduce_scatter: return "wait_reduce_scatter";
    case Op::Kind::sum_over_replicas: return "sum_over_replicas";
    case Op::Kind::read_loss: return "read_loss";
    case Op::Kind::wait_replicas: return "wait_replicas";
    case Op::Kind::optimizer: return "optimizer";
  }
  return "?";
}

std::vector<Op> training_step(const ScheduleShape& shape) {
  Builder builder(shape, Pass::training);
  for (int micro = 0; micro < shape.micro_steps; ++micro) builder.micro_step(micro, shape.micro_steps);
  std::vector<Op> ops = builder.take();
  ops.push_back({Op::Kind::wait_replicas});
  ops.push_back({Op::Kind::optimizer});
  return ops;
}

std::vector<Op> evaluation(const ScheduleShape& shape, int batches) {
  Builder builder(shape, Pass::evaluation);
  // No gradients: no micro-step is the last one of a step.
  for (int batch = 0; batch < batches; ++batch) builder.micro_step(batch, 0);
  return builder.take();
}

}  // namespace mics::engine
