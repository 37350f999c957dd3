// The one training engine. ddp, zero3 and mics are only group shapes handed to it:
//   ddp   p = 1      (no sharding; one all-reduce of the full gradient per optimizer step)
//   zero3 p = world  (one partition group; reduce-scatter over the world every micro-step)
//   mics  p = ranks per node, or any valid partition size (two-hop gradient synchronization)
//
// Per optimizer step, for every micro-step: before a unit is used, all-gather its parameters inside the
// partition group (hierarchically when the group spans nodes) while prefetching the next unit; after a
// unit's last backward stage, reduce-scatter its gradient inside the partition group into this rank's
// shard accumulator. At the last micro-step each accumulated shard is all-reduced across the
// replication group (once per optimizer step), then the global norm is reduced over the partition group
// only, and AdamW updates the shard in place. Replicas stay bit-identical without a broadcast.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/comm/groups.hpp"
#include "mics/engine/sharding.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/topology.hpp"

namespace mics::engine {

enum class Strategy { mics, zero3, ddp };
Strategy parse_strategy(std::string_view text);  // throws mics::Error naming the value
std::string_view to_string(Strategy strategy);

// The partition size a strategy asks for: ddp 1, zero3 the world, mics `requested` (0: ranks per node).
int partition_size_for(Strategy strategy, int requested, int world, int ranks_per_node);

struct EngineOptions {
  int micro_batch = 1;   // B sequences per rank per micro-step
  int grad_accum = 1;    // micro-steps per optimizer step
  bool hierarchical = false;  // two-stage all-gather when the partition group spans nodes
  // Gather bf16 copies of the parameters (half the bytes); the master weights stay fp32. Only matters
  // when p > 1: with p = 1 nothing is gathered.
  bool gather_bf16 = false;
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
  double compute = 0;           // forward and backward kernels
  double gather_wait = 0;       // waiting for parameters that the prefetch had not delivered
  double reduce_scatter = 0;    // waiting for gradient reduce-scatters and accumulating them
  double replica_all_reduce = 0;  // waiting for the replication all-reduce
  double optimizer = 0;         // norm, clipping, AdamW
  double total = 0;
};

// Traffic of one optimizer step per group kind (comm::GroupKind order).
using StepTraffic = std::array<comm::TrafficCounters, 6>;

struct StepResult {
  float loss = 0;        // mean over the global batch
  double grad_norm = 0;  // before clipping
  int gathers = 0;       // unit all-gathers issued (a unit still held in a slot is not gathered again)
  int reduce_scatters = 0;
  std::uint64_t gathered_shard_elements = 0;  // sum of the shard sizes of those gathers
  StepTimes times;
  StepTraffic traffic;
};

// Bytes this rank holds, by purpose (all fp32 on the CPU backend).
struct MemoryReport {
  std::size_t model_states = 0;  // master weights, Adam m and v, gradient accumulator: 16 B/param / p
  std::size_t gathered = 0;      // working set of gathered parameters (prefetch included), and with
                                 // bf16 gathers their bf16 slots and this rank's bf16 shard copies
  std::size_t gradients = 0;     // full-unit gradient buffers awaiting reduce-scatter
  std::size_t staging = 0;       // reduce-scatter outputs before accumulation
  std::size_t total() const { return model_states + gathered + gradients + staging; }
};

// Fills one micro-step's tokens: inputs and targets are B*T host ints.
using BatchFn = std::function<void(int micro_step, std::int32_t* inputs, std::int32_t* targets)>;

class Engine {
 public:
  Engine(model::Gpt& gpt, backends::Backend& backend, comm::Collectives& collectives, topology::Topology& topology,
         const EngineOptions& options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // GPT-2 init: every rank initialises each full unit from (seed, unit) and keeps its shard, so the
  // parameters do not depend on the layout.
  void init_parameters(std::uint64_t seed);
  // Sets parameters from full unit buffers on the host (e.g. an llm.c model file); optimizer state zero.
  void set_parameters(const std::function<const float*(int unit)>& full_unit);

  // One optimizer step: grad_accum micro-steps of forward and backward, then the update with `lr`.
  // `step` is 0-based (AdamW's bias correction uses step + 1).
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
  // What memory() should say from the sizes alone: 16 bytes per padded parameter / p, plus buffers.
  static MemoryReport expected_memory(const model::ParamLayout& layout, int p, bool gather_bf16 = false);
  bool hierarchical() const { return partition_.hierarchical(); }

 private:
  struct UnitState {
    backends::Buffer<float> master;  // shard_numel
    backends::Buffer<float> m;
    backends::Buffer<float> v;
    backends::Buffer<float> grad;    // accumulated gradient shard
    backends::Buffer<bf16> master_bf16;  // bf16 copy of master for half-size gathers (gather_bf16 only)
  };
  // Consecutive stages that need the same unit share one gather.
  struct Run {
    int unit;
    std::vector<std::pair<model::Stage, bool>> stages;  // (stage, is_backward)
  };
  static std::vector<Run> make_runs(const std::vector<model::Stage>& forward,
                                    const std::vector<model::Stage>& backward, bool with_backward);

  void run_micro_step(int micro, bool last_micro, bool backward, StepTimes& times);
  void progress_collectives();
  const float* unit_params(int unit, int slot);
  void start_gather(int unit, int slot);
  void finish_gather(StepTimes& times);
  void refresh_gather_copies();
  void finish_reduce_scatter(StepTimes& times);
  void update(int step, float lr, StepResult& result);

  model::Gpt& gpt_;
  backends::Backend& backend_;
  comm::Collectives& collectives_;
  topology::Topology& topology_;
  comm::PartitionGroup partition_;
  EngineOptions options_;
  int p_ = 1;
  int world_ = 1;
  std::vector<UnitSharding> sharding_;
  std::vector<UnitState> units_;
  // The fixed schedule of a micro-step, built once, and per-micro-step scratch reused across steps.
  std::vector<Run> train_runs_;
  std::vector<Run> eval_runs_;
  std::vector<std::size_t> last_backward_run_;
  std::vector<float*> grad_buffer_;
  std::vector<std::int32_t> batch_inputs_;
  std::vector<std::int32_t> batch_targets_;
  std::size_t max_padded_ = 0;

  // Working set (only when p > 1): two gathered-parameter slots (current and prefetch), two gradient
  // slots for blocks, one for the embedding (its gradient comes from the head and the embedding stages),
  // and one staging shard for a reduce-scatter in flight.
  std::array<backends::Buffer<float>, 2> gather_slots_;
  std::array<backends::Buffer<bf16>, 2> gather_slots_bf16_;  // land here, then widen into gather_slots_
  std::array<int, 2> slot_unit_{-1, -1};
  int widen_slot_ = -1;  // the slot whose bf16 gather must be widened to fp32 once it completes
  std::array<backends::Buffer<float>, 2> grad_slots_;
  backends::Buffer<float> embedding_grad_;
  backends::Buffer<float> staging_;

  comm::Request gather_request_;
  comm::Request reduce_scatter_request_;
  int reduce_scatter_unit_ = -1;
  bool reduce_scatter_accumulate_ = false;
  bool reduce_scatter_last_micro_ = false;
  std::vector<comm::Request> replica_requests_;

  // What the current step issued, for StepResult.
  int gathers_ = 0;
  int reduce_scatters_ = 0;
  std::uint64_t gathered_shard_elements_ = 0;
};

}  // namespace mics::engine
