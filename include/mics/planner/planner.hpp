// `mics plan`: memory and step time of every configuration of a deck at a given scale, predicted from the
// engine's own step schedule (engine::training_step) and memory plan (engine::expected_memory), with an
// alpha-beta cost per collective and link class (docs/planner.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mics/engine/memory.hpp"
#include "mics/engine/schedule.hpp"
#include "mics/model/gpt.hpp"
#include "mics/planner/hardware.hpp"
#include "mics/topology/plan.hpp"

namespace mics::planner {

// Activation recomputation as the planner models it. The engine keeps every activation of a micro-batch
// (none); `blocks` is what the engine would hold if it recomputed each block's activations in the
// backward pass from the block's input (docs/planner.md#activation-recomputation): a planner option only.
using Recompute = config::Recompute;  // train.recompute, as the engine runs it

// Bytes of the forward activations of one micro-batch (B, T): exactly what model::Gpt allocates for
// `none` (fp32), and for `blocks` each block's input plus one block's activations.
double activation_bytes(const model::GptShape& shape, int micro_batch, int seq_len, Recompute recompute);

struct MemoryPlan {
  engine::MemoryReport engine;  // what the engine allocates for the model (expected_memory)
  double activations = 0;
  double reserve = 0;           // the runtime's (hardware file)
  double total = 0;
  double capacity = 0;
  bool fits = false;
  std::string verdict;          // "" when it fits; else which term is too large and by how much
};
MemoryPlan plan_memory(const Hardware& hardware, const model::GptShape& shape, int seq_len,
                       const topology::ParallelPlan& plan, Recompute recompute);

// The time of one optimizer step, walking the schedule's operations on two resources.
struct TimePlan {
  double step = 0;         // seconds per optimizer step
  double compute = 0;      // forward, backward (and recomputation) stages
  double optimizer = 0;
  double gather = 0;       // busy time of the communication queue by kind
  double reduce_scatter = 0;
  double replicas = 0;
  double exposed = 0;      // step - compute - optimizer: communication compute waited for
  // Per-rank bytes sent per step, by the engine's ring accounting (comm::Collectives), per group kind.
  double bytes_partition = 0;   // flat gathers and reduce-scatters over the partition group
  double bytes_inter_node = 0;  // hierarchical gathers, inter-node stage
  double bytes_intra_node = 0;  // hierarchical gathers, intra-node stage
  double bytes_replication = 0;
  int gathers = 0;
  int reduce_scatters = 0;
  std::uint64_t gathered_shard_elements = 0;
};
TimePlan plan_time(const Hardware& hardware, const model::GptShape& shape, int seq_len,
                   const topology::ParallelPlan& plan, Recompute recompute);

// FLOPs of one stage for a micro-batch of `tokens` tokens (sequence seq_len): forward 2 per parameter
// per token (plus attention), backward twice the forward; with recomputation a block's backward adds
// its forward again.
double stage_flops(const model::GptShape& shape, int seq_len, double tokens, const model::Stage& stage,
                   bool backward, Recompute recompute);

struct Prediction {
  topology::ParallelPlan plan;
  Recompute recompute = Recompute::none;
  MemoryPlan memory;
  TimePlan time;
  double tokens_per_s = 0;
  double model_tflops_per_gpu = 0;     // 6N + 6LCT per token (useful work)
  double hardware_tflops_per_gpu = 0;  // including the recomputed forward
  double mfu = 0;
  std::string label() const;  // "mics p=8 hier bf16 B=2 s=4 recompute"
};

Prediction predict(const Hardware& hardware, const model::GptShape& shape, int seq_len,
                   const topology::ParallelPlan& plan, Recompute recompute);

struct PlanRequest {
  model::GptShape shape;
  int seq_len = 0;
  int nodes = 1;
  int sequences_per_gpu = 1;  // micro_batch x grad_accum of the deck: kept, so the global batch is kept
  std::vector<Recompute> recompute{Recompute::none, Recompute::blocks};
};
// Every valid configuration (strategies ddp, zero3, mics with every valid p, hierarchical on/off where a
// group spans nodes, gather dtype fp32/bf16 where p > 1, every micro-batch dividing sequences_per_gpu),
// sorted: those that fit first, by predicted tokens/s.
std::vector<Prediction> plan_all(const Hardware& hardware, const PlanRequest& request);
// One line: the best configuration that fits and why (or why none fits).
std::string recommendation(const std::vector<Prediction>& sorted);

}  // namespace mics::planner
