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

}  // namespace

std::vector<Engine::Run> Engine::make_runs(const std::vector<model::Stage>& forward, const std::vector<model::Stage>& backward,
                           bool with_backward) {
  std::vector<Engine::Run> runs;
  auto add = [&runs](const model::Stage& stage, bool is_backward) {
    if (runs.empty() || runs.back().unit != stage.unit) runs.push_back({stage.unit, {}});
    runs.back().stages.emplace_back(stage, is_backward);
  };
  for (const model::Stage& s : forward) add(s, false);
  if (with_backward)
    for (const model::Stage& s : backward) add(s, true);
  return runs;
}

Strategy parse_strategy(std::string_view text) {
  if (text == "mics") return Strategy::mics;
  if (text == "zero3") return Strategy::zero3;
  if (text == "ddp") return Strategy::ddp;
  throw Error("parallel.strategy = " + std::string(text) + " is not one of mics, zero3, ddp");
}

std::string_view to_string(Strategy strategy) {
  switch (strategy) {
    case Strategy::mics: return "mics";
    case Strategy::zero3: return "zero3";
    case Strategy::ddp: return "ddp";
  }
  return "?";
}

int partition_size_for(Strategy strategy, int requested, int world, int ranks_per_node) {
  switch (strategy) {
    case Strategy::ddp: return 1;
    case Strategy::zero3: return world;
    case Strategy::mics: return requested > 0 ? requested : ranks_per_node;
  }
  return requested;
}

Engine::Engine(model::Gpt& gpt, backends::Backend& backend, comm::Collectives& collectives,
               topology::Topology& topology, const EngineOptions& options)
    : gpt_(gpt),
      backend_(backend),
      collectives_(collectives),
      topology_(topology),
      partition_(collectives, topology, options.hierarchical),
      options_(options),
      p_(topology.shape().partition_size),
      world_(topology.shape().world) {
  MICS_CHECK(options.micro_batch == gpt.micro_batch(), "engine micro_batch differs from the model's");
  sharding_ = shard_units(gpt.layout(), p_, topology.placement().partition_rank);
  const auto tokens = static_cast<std::size_t>(gpt.micro_batch()) * static_cast<std::size_t>(gpt.seq_len());
  batch_inputs_.resize(tokens);
  batch_targets_.resize(tokens);
  train_runs_ = make_runs(gpt.forward_stages(), gpt.backward_stages(), true);
  eval_runs_ = make_runs(gpt.forward_stages(), gpt.backward_stages(), false);
  // The last backward run of each unit: after it the unit's gradient for the micro-step is complete.
  last_backward_run_.assign(sharding_.size(), train_runs_.size());
  for (std::size_t k = 0; k < train_runs_.size(); ++k)
    for (const auto& [stage, is_backward] : train_runs_[k].stages)
      if (is_backward) last_backward_run_[static_cast<std::size_t>(stage.unit)] = k;
  grad_buffer_.assign(sharding_.size(), nullptr);
  units_.resize(sharding_.size());
  for (std::size_t u = 0; u < sharding_.size(); ++u) {
    const std::size_t n = sharding_[u].shard_numel;
    UnitState& state = units_[u];
    state.master = backend.alloc<float>(n);
    state.m = backend.alloc<float>(n);
    state.v = backend.alloc<float>(n);
    state.grad = backend.alloc<float>(n);
    for (backends::Buffer<float>* b : {&state.master, &state.m, &state.v, &state.grad}) backend.zero(b->data(), n);
    max_padded_ = std::max(max_padded_, sharding_[u].padded_numel);
  }
  if (p_ > 1) {
    std::size_t max_shard = 0;
    for (const UnitSharding& s : sharding_) max_shard = std::max(max_shard, s.shard_numel);
    for (auto& slot : gather_slots_) slot = backend.alloc<float>(max_padded_);
    if (options.gather_bf16) {
      for (auto& slot : gather_slots_bf16_) slot = backend.alloc<bf16>(max_padded_);
      for (std::size_t u = 0; u < sharding_.size(); ++u)
        units_[u].master_bf16 = backend.alloc<bf16>(sharding_[u].shard_numel);
    }
    for (auto& slot : grad_slots_) slot = backend.alloc<float>(max_padded_);
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
  return r;
}

MemoryReport Engine::expected_memory(const model::ParamLayout& layout, int p, bool gather_bf16) {
  MemoryReport r;
  std::size_t max_padded = 0, max_shard = 0, embedding_padded = 0;
  const auto P = static_cast<std::size_t>(p);
  for (std::size_t u = 0; u < layout.units().size(); ++u) {
    const std::size_t padded = (layout.units()[u].numel + P - 1) / P * P;
    r.model_states += 4 * sizeof(float) * padded / P;  // master, m, v, accumulator
    max_padded = std::max(max_padded, padded);
    max_shard = std::max(max_shard, padded / P);
    if (u == 0) embedding_padded = padded;
  }
  if (p > 1) {
    r.gathered = 2 * max_padded * sizeof(float);
    if (gather_bf16) r.gathered += 2 * max_padded * sizeof(bf16) + r.model_states / 16 * sizeof(bf16);
    r.gradients = (2 * max_padded + embedding_padded) * sizeof(float);
    r.staging = max_shard * sizeof(float);
  }
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
  slot_unit_ = {-1, -1};
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
  slot_unit_ = {-1, -1};
}

void Engine::gather_unit(int unit, float* full) {
  const UnitSharding& s = sharding_[static_cast<std::size_t>(unit)];
  const float* source = units_[static_cast<std::size_t>(unit)].master.data();
  if (p_ > 1) {
    float* out = gather_slots_[0].data();
    partition_.all_gather<float>(std::span<const float>(source, s.shard_numel), std::span<float>(out, s.padded_numel));
    slot_unit_[0] = -1;
    source = out;
  }
  if (full != nullptr) backend_.copy_to_host(full, source, s.numel * sizeof(float));
}

// --- parameter gathering ----------------------------------------------------------------------------

const float* Engine::unit_params(int unit, int slot) {
  if (p_ == 1) return units_[static_cast<std::size_t>(unit)].master.data();  // the shard is the unit
  MICS_CHECK(slot_unit_[static_cast<std::size_t>(slot)] == unit, "unit not gathered in its slot");
  return gather_slots_[static_cast<std::size_t>(slot)].data();
}

void Engine::start_gather(int unit, int slot) {
  if (p_ == 1 || slot_unit_[static_cast<std::size_t>(slot)] == unit) return;
  const UnitSharding& s = sharding_[static_cast<std::size_t>(unit)];
  const auto k = static_cast<std::size_t>(slot);
  if (options_.gather_bf16) {
    const bf16* shard = units_[static_cast<std::size_t>(unit)].master_bf16.data();
    gather_request_ = partition_.iall_gather<bf16>(std::span<const bf16>(shard, s.shard_numel),
                                                   std::span<bf16>(gather_slots_bf16_[k].data(), s.padded_numel));
    widen_slot_ = slot;
  } else {
    const float* shard = units_[static_cast<std::size_t>(unit)].master.data();
    gather_request_ = partition_.iall_gather<float>(std::span<const float>(shard, s.shard_numel),
                                                    std::span<float>(gather_slots_[k].data(), s.padded_numel));
  }
  slot_unit_[static_cast<std::size_t>(slot)] = unit;
  ++gathers_;
  gathered_shard_elements_ += s.shard_numel;
}

// MPI progresses non-blocking collectives only inside MPI calls (no progress thread by default), and the
// hierarchical gather starts its intra-node stage only once its inter-node stage is seen complete:
// poll between compute stages so the prefetch and reduce-scatters move while the next stage computes.
void Engine::progress_collectives() {
  gather_request_.test();
  reduce_scatter_request_.test();
  for (comm::Request& r : replica_requests_) r.test();
}

void Engine::finish_gather(StepTimes& times) {
  if (!gather_request_.done()) {
    ScopedTimer timer(times.gather_wait);
    gather_request_.wait();
  }
  if (widen_slot_ >= 0) {
    const auto k = static_cast<std::size_t>(widen_slot_);
    const std::size_t n = sharding_[static_cast<std::size_t>(slot_unit_[k])].padded_numel;
    backend_.from_bf16(gather_slots_[k].data(), gather_slots_bf16_[k].data(), n);
    widen_slot_ = -1;
  }
}

void Engine::refresh_gather_copies() {
  if (!options_.gather_bf16 || p_ == 1) return;
  for (std::size_t u = 0; u < units_.size(); ++u)
    backend_.to_bf16(units_[u].master_bf16.data(), units_[u].master.data(), sharding_[u].shard_numel);
  slot_unit_ = {-1, -1};
}

// --- gradient reduce-scatter and the replication all-reduce -------------------------------------------

void Engine::finish_reduce_scatter(StepTimes& times) {
  if (reduce_scatter_unit_ < 0) return;
  ScopedTimer timer(times.reduce_scatter);
  reduce_scatter_request_.wait();
  UnitState& state = units_[static_cast<std::size_t>(reduce_scatter_unit_)];
  const std::size_t n = sharding_[static_cast<std::size_t>(reduce_scatter_unit_)].shard_numel;
  if (reduce_scatter_accumulate_) backend_.axpy(state.grad.data(), 1.0f, staging_.data(), n);
  if (reduce_scatter_last_micro_ && topology_.shape().replicas > 1)
    replica_requests_.push_back(partition_.iall_reduce_replicas<float>(std::span<float>(state.grad.data(), n),
                                                                       comm::ReduceOp::sum));
  reduce_scatter_unit_ = -1;
}

void Engine::run_micro_step(int micro, bool last_micro, bool backward, StepTimes& times) {
  const std::vector<Run>& runs = backward ? train_runs_ : eval_runs_;
  std::fill(grad_buffer_.begin(), grad_buffer_.end(), nullptr);  // set at each unit's first backward stage
  // Every rank's micro-batch loss is a mean over B*T tokens; the global gradient is their mean.
  const float grad_scale = 1.0f / static_cast<float>(world_ * options_.grad_accum);
  int block_grad_slot = 0;

  start_gather(runs[0].unit, 0);
  finish_gather(times);
  for (std::size_t k = 0; k < runs.size(); ++k) {
    const Run& run = runs[k];
    const int slot = static_cast<int>(k % 2);
    if (k + 1 < runs.size()) start_gather(runs[k + 1].unit, static_cast<int>((k + 1) % 2));
    const float* params = unit_params(run.unit, slot);
    const auto u = static_cast<std::size_t>(run.unit);
    for (const auto& [stage, is_backward] : run.stages) {
      if (!is_backward) {
        {
          ScopedTimer timer(times.compute);
          gpt_.forward(stage, params);
        }
        progress_collectives();
        continue;
      }
      const std::size_t padded = sharding_[u].padded_numel;
      if (grad_buffer_[u] == nullptr) {
        if (p_ == 1) {
          grad_buffer_[u] = units_[u].grad.data();  // accumulate straight into the (unsharded) accumulator
          if (micro == 0) backend_.zero(grad_buffer_[u], padded);
        } else {
          // Blocks alternate between two slots: a slot's previous reduce-scatter was finished before
          // the next one was issued. The embedding keeps its own buffer from the head to the embedding.
          if (u != 0) block_grad_slot ^= 1;
          grad_buffer_[u] = u == 0 ? embedding_grad_.data() : grad_slots_[static_cast<std::size_t>(block_grad_slot)].data();
          backend_.zero(grad_buffer_[u], padded);
        }
      }
      float* grads = grad_buffer_[u];
      {
        ScopedTimer timer(times.compute);
        gpt_.backward(stage, params, grads, grad_scale);
      }
      progress_collectives();
      if (last_backward_run_[u] != k || &stage != &run.stages.back().first) continue;
      // The unit's gradient for this micro-step is complete.
      if (p_ == 1) {
        if (last_micro && topology_.shape().replicas > 1)
          replica_requests_.push_back(partition_.iall_reduce_replicas<float>(
              std::span<float>(units_[u].grad.data(), sharding_[u].shard_numel), comm::ReduceOp::sum));
      } else {
        finish_reduce_scatter(times);  // at most one in flight: it frees the staging shard
        ScopedTimer timer(times.reduce_scatter);
        const std::size_t n = sharding_[u].shard_numel;
        float* out = micro == 0 ? units_[u].grad.data() : staging_.data();  // copy first, add afterwards
        reduce_scatter_request_ = partition_.ireduce_scatter<float>(std::span<const float>(grads, padded),
                                                                    std::span<float>(out, n), comm::ReduceOp::sum);
        reduce_scatter_unit_ = run.unit;
        ++reduce_scatters_;
        reduce_scatter_accumulate_ = micro != 0;
        reduce_scatter_last_micro_ = last_micro;
      }
    }
    if (k + 1 < runs.size()) finish_gather(times);
  }
  finish_reduce_scatter(times);
}

void Engine::update(int step, float lr, StepResult& result) {
  {
    ScopedTimer timer(result.times.replica_all_reduce);
    for (comm::Request& r : replica_requests_) r.wait();
    replica_requests_.clear();
  }
  ScopedTimer timer(result.times.optimizer);
  // The shards are disjoint inside a partition group and already averaged over the replicas, so the
  // global norm needs the partition group only.
  double sum_squares = 0;
  for (std::size_t u = 0; u < units_.size(); ++u)
    sum_squares += backend_.sum_squares(units_[u].grad.data(), sharding_[u].shard_numel);
  partition_.all_reduce_partition<double>(std::span<double>(&sum_squares, 1), comm::ReduceOp::sum);
  result.grad_norm = std::sqrt(sum_squares);
  // Every rank sees the same norm. A non-finite one would poison master weights and moments (and then
  // a checkpoint): leave the states as they are and let the caller stop.
  if (!std::isfinite(result.grad_norm)) return;
  const float clip = optim::clip_scale(result.grad_norm, options_.grad_clip);
  for (std::size_t u = 0; u < units_.size(); ++u) {
    UnitState& state = units_[u];
    for (const ShardSegment& seg : sharding_[u].segments) {
      const backends::AdamWStep hp{lr,   options_.beta1, options_.beta2, options_.eps,
                                   seg.decay ? options_.weight_decay : 0.0f, step + 1, clip};
      backend_.adamw(state.master.data() + seg.offset, state.grad.data() + seg.offset, state.m.data() + seg.offset,
                     state.v.data() + seg.offset, seg.length, hp);
    }
  }
  slot_unit_ = {-1, -1};  // parameters changed: gathered copies are stale
}

StepResult Engine::step(int step, float lr, const BatchFn& batch) {
  const Clock::time_point start = Clock::now();
  topology_.reset_counters();
  gathers_ = 0;
  reduce_scatters_ = 0;
  gathered_shard_elements_ = 0;
  refresh_gather_copies();
  StepResult result;
  std::vector<std::int32_t>& inputs = batch_inputs_;
  std::vector<std::int32_t>& targets = batch_targets_;
  double loss_sum = 0;
  for (int micro = 0; micro < options_.grad_accum; ++micro) {
    batch(micro, inputs.data(), targets.data());
    gpt_.set_batch(inputs.data(), targets.data());
    run_micro_step(micro, micro + 1 == options_.grad_accum, true, result.times);
    ScopedTimer timer(result.times.compute);  // on a device, the wait for the micro-step's kernels
    loss_sum += gpt_.loss();
  }
  update(step, lr, result);
  result.gathers = gathers_;
  result.reduce_scatters = reduce_scatters_;
  result.gathered_shard_elements = gathered_shard_elements_;
  // Per-step traffic of the algorithm, taken before the metrics' own all-reduce below.
  auto take = [&result](comm::Communicator& c) {
    if (c.valid()) result.traffic[static_cast<std::size_t>(c.kind())] = c.take_counters();
  };
  take(topology_.partition());
  take(topology_.replication());
  take(topology_.intra_node());
  take(topology_.inter_node());
  take(topology_.node());
  comm::all_reduce<double>(collectives_, std::span<double>(&loss_sum, 1), comm::ReduceOp::sum, topology_.world());
  take(topology_.world());
  result.loss = static_cast<float>(loss_sum / (world_ * options_.grad_accum));
  result.times.total = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

float Engine::evaluate(int batches, const BatchFn& batch) {
  std::vector<std::int32_t>& inputs = batch_inputs_;
  std::vector<std::int32_t>& targets = batch_targets_;
  StepTimes ignored;
  refresh_gather_copies();
  double loss_sum = 0;
  for (int b = 0; b < batches; ++b) {
    batch(b, inputs.data(), targets.data());
    gpt_.set_batch(inputs.data(), targets.data());
    run_micro_step(b, false, false, ignored);
    loss_sum += gpt_.loss();
  }
  comm::all_reduce<double>(collectives_, std::span<double>(&loss_sum, 1), comm::ReduceOp::sum, topology_.world());
  topology_.reset_counters();
  return static_cast<float>(loss_sum / (static_cast<double>(world_) * batches));
}

}  // namespace mics::engine
