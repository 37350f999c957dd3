#include "mics/engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "mics/optim/schedule.hpp"
#include "mics/util/error.hpp"

namespace mics::engine {

namespace {
using Clock = std::chrono::steady_clock;

// Adds the scope's wall time to a counter.
class ScopedTimer {
 public:
  explicit ScopedTimer(double& sink) : sink_(sink), start_(Clock::now()) {}
  ~ScopedTimer() { sink_ += std::chrono::duration<double>(Clock::now() - start_).count(); }
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  double& sink_;
  Clock::time_point start_;
};

ScheduleShape schedule_shape(const model::Gpt& gpt, const topology::ParallelPlan& plan) {
  return {gpt.layout().shape().layers, plan.sharded(), plan.replicated(), plan.grad_accum, gpt.recompute_mode()};
}

}  // namespace

Engine::Engine(model::Gpt& gpt, backends::Backend& backend, comm::Collectives& collectives,
               const topology::Topology& topology, const topology::ParallelPlan& plan,
               const OptimizerOptions& optimizer)
    : gpt_(gpt),
      backend_(backend),
      groups_(collectives, topology, plan),
      plan_(plan),
      optimizer_(optimizer) {
  MICS_CHECK(plan.micro_batch == gpt.micro_batch(), "the plan's micro_batch differs from the model's");
  const int p = plan.shape.partition_size;
  sharding_ = shard_units(gpt.layout(), p, topology.placement().partition_rank);
  const auto tokens = static_cast<std::size_t>(gpt.micro_batch()) * static_cast<std::size_t>(gpt.seq_len());
  batch_inputs_.resize(tokens);
  batch_targets_.resize(tokens);
  training_ = training_step(schedule_shape(gpt, plan));
  for (const Op& op : training_) {
    if (op.kind == Op::Kind::gather) {
      ++gathers_per_step_;
      gathered_elements_per_step_ += sharding_[static_cast<std::size_t>(op.unit)].shard_numel;
    }
    reduce_scatters_per_step_ += op.kind == Op::Kind::reduce_scatter;
  }

  grad_buffer_.assign(sharding_.size(), nullptr);
  units_.resize(sharding_.size());
  std::size_t max_padded = 0, max_shard = 0;
  for (std::size_t u = 0; u < sharding_.size(); ++u) {
    const std::size_t n = sharding_[u].shard_numel;
    UnitState& state = units_[u];
    state.master = backend.alloc<float>(n);
    state.m = backend.alloc<float>(n);
    state.v = backend.alloc<float>(n);
    state.grad = backend.alloc<float>(n);
    for (backends::Buffer<float>* b : {&state.master, &state.m, &state.v, &state.grad}) backend.zero(b->data(), n);
    max_padded = std::max(max_padded, sharding_[u].padded_numel);
    max_shard = std::max(max_shard, n);
  }
  if (plan.sharded()) {
    for (auto& slot : gather_slots_) slot = backend.alloc<float>(max_padded);
    if (plan.gather_bf16) {
      for (auto& slot : gather_slots_bf16_) slot = backend.alloc<bf16>(max_padded);
      for (std::size_t u = 0; u < sharding_.size(); ++u)
        units_[u].master_bf16 = backend.alloc<bf16>(sharding_[u].shard_numel);
    }
    for (auto& slot : grad_slots_) slot = backend.alloc<float>(max_padded);
    embedding_grad_ = backend.alloc<float>(sharding_[0].padded_numel);
    staging_ = backend.alloc<float>(max_shard);
  }
}

MemoryReport Engine::memory() const {
  MemoryReport r;
  for (const UnitState& s : units_) r.model_states += s.master.bytes() + s.m.bytes() + s.v.bytes() + s.grad.bytes();
  for (const auto& slot : gather_slots_) r.gathered += slot.bytes();
  for (const auto& slot : gather_slots_bf16_) r.gathered += slot.bytes();
  for (const UnitState& s : units_) r.gathered += s.master_bf16.bytes();
  for (const auto& slot : grad_slots_) r.gradients += slot.bytes();
  r.gradients += embedding_grad_.bytes();
  r.staging = staging_.bytes();
  r.activations = gpt_.activation_bytes();
  return r;
}

void Engine::init_parameters(std::uint64_t seed) {
  // Each rank makes only its shard (the values depend on (seed, unit, element) alone); padding stays 0.
  for (std::size_t u = 0; u < sharding_.size(); ++u) {
    const UnitSharding& s = sharding_[u];
    backend_.zero(units_[u].master.data(), s.shard_numel);
    if (s.shard_begin < s.numel)
      gpt_.init_unit_range(static_cast<int>(u), units_[u].master.data(), seed, s.shard_begin,
                           s.shard_begin + s.shard_numel);
    backend_.zero(units_[u].m.data(), s.shard_numel);
    backend_.zero(units_[u].v.data(), s.shard_numel);
  }
}

void Engine::set_parameters(const std::function<const float*(int unit)>& full_unit) {
  for (std::size_t u = 0; u < sharding_.size(); ++u) {
    const UnitSharding& s = sharding_[u];
    const float* full = full_unit(static_cast<int>(u));
    backend_.zero(units_[u].master.data(), s.shard_numel);
    if (s.shard_begin < s.numel) {
      const std::size_t real = std::min(s.numel, s.shard_begin + s.shard_numel) - s.shard_begin;
      backend_.copy_from_host(units_[u].master.data(), full + s.shard_begin, real * sizeof(float));
    }
    backend_.zero(units_[u].m.data(), s.shard_numel);
    backend_.zero(units_[u].v.data(), s.shard_numel);
  }
}

void Engine::gather_unit(int unit, float* full) {
  const UnitSharding& s = sharding_[static_cast<std::size_t>(unit)];
  const float* source = units_[static_cast<std::size_t>(unit)].master.data();
  if (plan_.sharded()) {
    float* out = gather_slots_[0].data();
    groups_.gather<float>(std::span<const float>(source, s.shard_numel), std::span<float>(out, s.padded_numel)).wait();
    source = out;
  }
  if (full != nullptr) backend_.copy_to_host(full, source, s.numel * sizeof(float));
}

// --- the step ----------------------------------------------------------------------------------------------

StepResult Engine::step(int step, float lr, const BatchFn& batch) {
  const Clock::time_point start = Clock::now();
  (void)groups_.collectives().take_traffic();  // from here on, this step's
  refresh_gather_copies();
  Run run{batch, 1.0f / static_cast<float>(plan_.shape.world * plan_.grad_accum), 0.0, {}};
  StepResult result;
  execute(training_, run, step, lr, &result);  // the optimizer op sets result.loss and grad_norm
  result.gathers = gathers_per_step_;
  result.reduce_scatters = reduce_scatters_per_step_;
  result.gathered_shard_elements = gathered_elements_per_step_;
  result.traffic = groups_.collectives().take_traffic();
  result.times = run.times;
  result.times.total = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

float Engine::evaluate(int batches, const BatchFn& batch) {
  refresh_gather_copies();
  Run run{batch, 0.0f, 0.0, {}};
  execute(evaluation(schedule_shape(gpt_, plan_), batches), run, 0, 0.0f, nullptr);
  groups_.sum_over_world(std::span<double>(&run.loss_sum, 1));
  (void)groups_.collectives().take_traffic();  // validation is not a step's traffic
  return static_cast<float>(run.loss_sum / (static_cast<double>(plan_.shape.world) * batches));
}

// The schedule, one operation at a time. Compute operations give the collectives in flight a turn after
// them, so the prefetch and the reduce-scatters move while the next stage computes.
void Engine::execute(const std::vector<Op>& ops, Run& run, int step, float lr, StepResult* result) {
  for (const Op& op : ops) {
    switch (op.kind) {
      case Op::Kind::load_batch:
        run.batch(op.micro, batch_inputs_.data(), batch_targets_.data());
        gpt_.set_batch(batch_inputs_.data(), batch_targets_.data());
        break;
      case Op::Kind::gather: start_gather(op); break;
      case Op::Kind::wait_gather: finish_gather(run.times); break;
      case Op::Kind::forward: {
        {
          ScopedTimer timer(run.times.compute);
          gpt_.forward(op.stage, parameters(op));
        }
        groups_.progress();
        break;
      }
      case Op::Kind::recompute: {
        {
          ScopedTimer timer(run.times.compute);
          gpt_.recompute(op.stage, parameters(op));
        }
        groups_.progress();
        break;
      }
      case Op::Kind::begin_gradient: begin_gradient(op); break;
      case Op::Kind::backward: {
        {
          ScopedTimer timer(run.times.compute);
          gpt_.backward(op.stage, parameters(op), grad_buffer_[static_cast<std::size_t>(op.unit)], run.grad_scale);
        }
        groups_.progress();
        break;
      }
      case Op::Kind::reduce_scatter: start_reduce_scatter(op, run.times); break;
      case Op::Kind::wait_reduce_scatter: finish_reduce_scatter(run.times); break;
      case Op::Kind::sum_over_replicas: {
        UnitState& state = units_[static_cast<std::size_t>(op.unit)];
        replica_sums_.push_back(groups_.sum_over_replicas(std::span<float>(state.grad.data(), state.grad.size())));
        break;
      }
      case Op::Kind::read_loss: {
        ScopedTimer timer(run.times.compute);  // on a device, the wait for the micro-step's kernels
        run.loss_sum += gpt_.loss();
        break;
      }
      case Op::Kind::wait_replicas: {
        ScopedTimer timer(run.times.replica_all_reduce);
        for (comm::Request& r : replica_sums_) r.wait();
        replica_sums_.clear();
        break;
      }
      case Op::Kind::optimizer: {
        ScopedTimer timer(run.times.optimizer);
        update(step, lr, run, *result);
        break;
      }
    }
  }
}

// --- parameter gathering ----------------------------------------------------------------------------------

const float* Engine::parameters(const Op& op) {
  if (!plan_.sharded()) return units_[static_cast<std::size_t>(op.unit)].master.data();  // the shard is the unit
  return gather_slots_[static_cast<std::size_t>(op.slot)].data();
}

void Engine::start_gather(const Op& op) {
  const UnitSharding& s = sharding_[static_cast<std::size_t>(op.unit)];
  const auto k = static_cast<std::size_t>(op.slot);
  UnitState& unit = units_[static_cast<std::size_t>(op.unit)];
  gather_.slot = op.slot;
  gather_.widen = plan_.gather_bf16;
  gather_.elements = s.padded_numel;
  if (plan_.gather_bf16) {
    gather_.request = groups_.gather<bf16>(std::span<const bf16>(unit.master_bf16.data(), s.shard_numel),
                                           std::span<bf16>(gather_slots_bf16_[k].data(), s.padded_numel));
  } else {
    gather_.request = groups_.gather<float>(std::span<const float>(unit.master.data(), s.shard_numel),
                                            std::span<float>(gather_slots_[k].data(), s.padded_numel));
  }
}

void Engine::finish_gather(StepTimes& times) {
  if (!gather_.request.done()) {
    ScopedTimer timer(times.gather_wait);
    gather_.request.wait();
  }
  if (gather_.widen) {
    const auto k = static_cast<std::size_t>(gather_.slot);
    backend_.from_bf16(gather_slots_[k].data(), gather_slots_bf16_[k].data(), gather_.elements);
    gather_.widen = false;
  }
}

// bf16 copies of the masters, made once per step (or validation) before the first gather.
void Engine::refresh_gather_copies() {
  if (!plan_.gather_bf16) return;
  for (std::size_t u = 0; u < units_.size(); ++u)
    backend_.to_bf16(units_[u].master_bf16.data(), units_[u].master.data(), sharding_[u].shard_numel);
}

// --- gradients: this micro-step's buffer, the reduce-scatter into the shard ----------------------------------

void Engine::begin_gradient(const Op& op) {
  const auto u = static_cast<std::size_t>(op.unit);
  float* buffer = nullptr;
  switch (op.slot) {
    case kAccumulatorGradient: buffer = units_[u].grad.data(); break;
    case kEmbeddingGradient: buffer = embedding_grad_.data(); break;
    default: buffer = grad_slots_[static_cast<std::size_t>(op.slot)].data(); break;
  }
  grad_buffer_[u] = buffer;
  backend_.zero(buffer, sharding_[u].padded_numel);
}

void Engine::start_reduce_scatter(const Op& op, StepTimes& times) {
  ScopedTimer timer(times.reduce_scatter);
  const auto u = static_cast<std::size_t>(op.unit);
  const std::size_t n = sharding_[u].shard_numel;
  // Micro-step 0 writes the accumulator itself; later ones land in the staging shard and are added.
  reduce_scatter_.unit = op.unit;
  reduce_scatter_.accumulate = op.micro != 0;
  float* out = reduce_scatter_.accumulate ? staging_.data() : units_[u].grad.data();
  reduce_scatter_.request = groups_.reduce_scatter(std::span<const float>(grad_buffer_[u], sharding_[u].padded_numel),
                                                   std::span<float>(out, n));
}

void Engine::finish_reduce_scatter(StepTimes& times) {
  ScopedTimer timer(times.reduce_scatter);
  reduce_scatter_.request.wait();
  if (reduce_scatter_.accumulate) {
    UnitState& state = units_[static_cast<std::size_t>(reduce_scatter_.unit)];
    backend_.axpy(state.grad.data(), 1.0f, staging_.data(), state.grad.size());
    reduce_scatter_.accumulate = false;
  }
}

// --- the optimizer ----------------------------------------------------------------------------------------------

void Engine::update(int step, float lr, Run& run, StepResult& result) {
  // The shards are disjoint inside a partition group and already summed over the replicas, so the global
  // norm needs the partition group only, and is the same in every partition group.
  double sum_squares = 0;
  for (std::size_t u = 0; u < units_.size(); ++u)
    sum_squares += backend_.sum_squares(units_[u].grad.data(), sharding_[u].shard_numel);
  groups_.sum_over_partition(std::span<double>(&sum_squares, 1));
  result.grad_norm = std::sqrt(sum_squares);
  const float clip = optim::clip_scale(result.grad_norm, optimizer_.grad_clip);
  const auto step_for = [&](const ShardSegment& seg) {
    return backends::AdamWStep{lr,   optimizer_.beta1, optimizer_.beta2, optimizer_.eps,
                               seg.decay ? optimizer_.weight_decay : 0.0f, step + 1, clip};
  };

  // The guard looks ahead before anything changes: a read-only pass with the update's own arithmetic
  // counts the elements it would leave non-finite (an overflowing moment or parameter, a NaN from inf/inf),
  // so a bad step is skipped with the master weights and moments untouched, never repaired after.
  // Replicas hold identical shards and find identical counts.
  double agreed[2] = {run.loss_sum, 0.0};  // [0] the loss sum, [1] elements the update would break
  if (std::isfinite(result.grad_norm)) {
    for (std::size_t u = 0; u < units_.size(); ++u) {
      const UnitState& state = units_[u];
      for (const ShardSegment& seg : sharding_[u].segments)
        backend_.adamw_count_nonfinite(state.master.data() + seg.offset, state.grad.data() + seg.offset,
                                       state.m.data() + seg.offset, state.v.data() + seg.offset, seg.length,
                                       step_for(seg));
    }
    agreed[1] = static_cast<double>(backend_.take_nonfinite_count());
  }
  // One world reduction carries both: the metrics' mean loss and the guard's count.
  groups_.sum_over_world(std::span<double>(agreed, 2));
  result.loss = static_cast<float>(agreed[0] / (plan_.shape.world * plan_.grad_accum));
  result.nonfinite_elements = static_cast<std::uint64_t>(agreed[1]) / static_cast<std::uint64_t>(plan_.shape.replicas);
  if (!std::isfinite(agreed[0]))
    result.nonfinite = NonFinite::loss;
  else if (!std::isfinite(result.grad_norm))
    result.nonfinite = NonFinite::grad_norm;
  else if (result.nonfinite_elements != 0)
    result.nonfinite = NonFinite::update;
  if (result.nonfinite != NonFinite::none) return;

  for (std::size_t u = 0; u < units_.size(); ++u) {
    UnitState& state = units_[u];
    for (const ShardSegment& seg : sharding_[u].segments)
      backend_.adamw(state.master.data() + seg.offset, state.grad.data() + seg.offset, state.m.data() + seg.offset,
                     state.v.data() + seg.offset, seg.length, step_for(seg));
  }
}

const char* to_string(NonFinite what) {
  switch (what) {
    case NonFinite::none: return "none";
    case NonFinite::loss: return "loss";
    case NonFinite::grad_norm: return "gradient norm";
    case NonFinite::update: return "update";
  }
  return "?";
}

}  // namespace mics::engine
