// The one training engine. ddp, zero3 and mics are only group shapes of its plan (topology/plan.hpp).
// A step executes the operation list of engine/schedule.hpp: for every micro-step, units are gathered
// inside the partition group (the next one while the current one computes), the stages run forward and
// backward, each unit's gradient is reduce-scattered into this rank's shard accumulator; at the last
// micro-step each accumulated shard is summed across the replication group (once per optimizer step);
// then the global norm is reduced over the partition group only and AdamW updates the shard in place.
// Replicas stay bit-identical without a broadcast.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/comm/groups.hpp"
#include "mics/engine/memory.hpp"
#include "mics/engine/schedule.hpp"
#include "mics/engine/sharding.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"

namespace mics::engine {

// AdamW with decoupled weight decay on matrices, and global-norm clipping.
struct OptimizerOptions {
  float weight_decay = 0.0f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float grad_clip = 0.0f;  // max global norm; 0 = off
};

// Where the wall time of one optimizer step went (seconds, this rank), measured on the host. On a device
// backend the ops only queue work and the host waits where a result comes back (each micro-step's loss,
// read after its backward, and each unit's gradient norm): device time lands in the timer that holds the
// wait, compute and optimizer. With NCCL, whose waits order the streams without blocking the host,
// gather_wait, reduce_scatter and replica_all_reduce stay near 0. total holds over a run (a step's AdamW
// is waited for in the next step).
struct StepTimes {
  double compute = 0;             // forward and backward kernels
  double gather_wait = 0;         // waiting for parameters that the prefetch had not delivered
  double reduce_scatter = 0;      // waiting for gradient reduce-scatters and accumulating them
  double replica_all_reduce = 0;  // waiting for the replication all-reduce
  double optimizer = 0;           // norm, clipping, AdamW
  double total = 0;
};

// The numerics guard: what was not finite in a step, checked in this order. The parameters and moments are
// updated only when nothing was (`none`); every rank sees the same outcome.
enum class NonFinite {
  none,
  loss,       // the global mean loss
  grad_norm,  // the global gradient norm (an inf or NaN in any gradient)
  update,     // the AdamW update itself: a parameter or moment would overflow or become NaN
};
const char* to_string(NonFinite what);

struct StepResult {
  float loss = 0;        // mean over the global batch
  double grad_norm = 0;  // before clipping
  NonFinite nonfinite = NonFinite::none;  // not none: the optimizer step was not applied
  std::uint64_t nonfinite_elements = 0;   // for `update`: the elements of the shards the update would break
  int gathers = 0;       // unit all-gathers issued (a unit still held in a slot is not gathered again)
  int reduce_scatters = 0;
  std::uint64_t gathered_shard_elements = 0;  // sum of the shard sizes of those gathers
  StepTimes times;
  comm::Traffic traffic;  // this rank's, per group kind, the metrics' own loss all-reduce included
};

// Fills one micro-step's tokens: inputs and targets are B*T host ints.
using BatchFn = std::function<void(int micro_step, std::int32_t* inputs, std::int32_t* targets)>;

class Engine {
 public:
  Engine(model::Gpt& gpt, backends::Backend& backend, comm::Collectives& collectives,
         const topology::Topology& topology, const topology::ParallelPlan& plan, const OptimizerOptions& optimizer);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // GPT-2 init: each rank makes its shard from (seed, unit, element), so the parameters do not depend on
  // the layout.
  void init_parameters(std::uint64_t seed);
  // Sets parameters from full unit buffers on the host (e.g. an llm.c model file); optimizer state zero.
  void set_parameters(const std::function<const float*(int unit)>& full_unit);

  // One optimizer step (the training_step schedule) with learning rate `lr`. `step` is 0-based (AdamW's
  // bias correction uses step + 1).
  StepResult step(int step, float lr, const BatchFn& batch);
  // Mean loss of `batches` forward-only micro-batches per rank, averaged over the world.
  float evaluate(int batches, const BatchFn& batch);

  // All-gathers a unit's parameters into `full` (host, numel elements; null: this rank only takes part)
  // on every rank of the partition group: collective over the partition group.
  void gather_unit(int unit, float* full);

  const std::vector<UnitSharding>& sharding() const { return sharding_; }
  // This rank's shards (backend memory), for checkpoints.
  float* master_shard(int unit) { return units_[static_cast<std::size_t>(unit)].master.data(); }
  float* adam_m_shard(int unit) { return units_[static_cast<std::size_t>(unit)].m.data(); }
  float* adam_v_shard(int unit) { return units_[static_cast<std::size_t>(unit)].v.data(); }

  MemoryReport memory() const;
  const std::vector<Op>& training_schedule() const { return training_; }

 private:
  struct UnitState {
    backends::Buffer<float> master;  // shard_numel
    backends::Buffer<float> m;
    backends::Buffer<float> v;
    backends::Buffer<float> grad;        // accumulated gradient shard
    backends::Buffer<bf16> master_bf16;  // bf16 copy of master for half-size gathers (gather_bf16 only)
  };
  // Operations in flight.
  struct PendingGather {
    comm::Request request;
    int slot = -1;
    std::size_t elements = 0;  // the unit's padded size
    bool widen = false;        // landed in the bf16 slot: widen into the fp32 slot once complete
  };
  struct PendingReduceScatter {
    comm::Request request;
    int unit = -1;
    bool accumulate = false;  // landed in the staging shard: add it to the accumulator
  };
  // What one execution of a schedule needs besides the ops.
  struct Run {
    const BatchFn& batch;
    float grad_scale = 0;  // 1 / (world * micro-steps): the global gradient is the mean of the ranks' means
    double loss_sum = 0;
    StepTimes times;
  };

  void execute(const std::vector<Op>& ops, Run& run, int step, float lr, StepResult* result);
  void start_gather(const Op& op);
  void finish_gather(StepTimes& times);
  void begin_gradient(const Op& op);
  void start_reduce_scatter(const Op& op, StepTimes& times);
  void finish_reduce_scatter(StepTimes& times);
  // The optimizer op: reduces the loss and the gradient norm, runs the numerics guard, and applies AdamW
  // only when it passes (result->nonfinite says why not).
  void update(int step, float lr, Run& run, StepResult& result);
  const float* parameters(const Op& op);
  void refresh_gather_copies();

  model::Gpt& gpt_;
  backends::Backend& backend_;
  comm::MicsGroups groups_;
  topology::ParallelPlan plan_;
  OptimizerOptions optimizer_;
  std::vector<UnitSharding> sharding_;
  std::vector<UnitState> units_;
  std::vector<Op> training_;  // the step's schedule, built once
  int gathers_per_step_ = 0;
  int reduce_scatters_per_step_ = 0;
  std::uint64_t gathered_elements_per_step_ = 0;
  std::vector<std::int32_t> batch_inputs_;
  std::vector<std::int32_t> batch_targets_;

  // Working set (only when p > 1): two gathered-parameter slots (current and prefetch), two gradient
  // buffers for blocks, one for the embedding, and one staging shard for a reduce-scatter in flight.
  std::array<backends::Buffer<float>, 2> gather_slots_;
  std::array<backends::Buffer<bf16>, 2> gather_slots_bf16_;  // land here, then widen into gather_slots_
  std::array<backends::Buffer<float>, 2> grad_slots_;
  backends::Buffer<float> embedding_grad_;
  backends::Buffer<float> staging_;
  std::vector<float*> grad_buffer_;  // per unit: this micro-step's gradient buffer (begin_gradient)

  PendingGather gather_;
  PendingReduceScatter reduce_scatter_;
  std::vector<comm::Request> replica_sums_;
};

}  // namespace mics::engine
