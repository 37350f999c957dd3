// One optimizer step as an explicit sequence of operations (docs/algorithms.md#two-hop-gradient-synchronization).
// The engine executes the list in order; a performance model can walk the same list and cost each
// operation. Everything the step does is here: which unit is gathered into which slot and when it is
// waited for (the prefetch), the forward and backward stages, the reduce-scatters, the second hop across
// the replicas, and the optimizer. ddp (p = 1) is the same list without gathers and reduce-scatters: a
// rank's shard is the whole unit, and gradients accumulate in place.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mics/model/gpt.hpp"

namespace mics::engine {

struct Op {
  enum class Kind {
    load_batch,           // micro-step `micro`'s tokens to the model
    gather,               // start gathering `unit`'s parameters into gather slot `slot` (partition group)
    wait_gather,          // slot `slot` holds its unit's parameters
    forward,              // `stage` on the parameters in slot `slot` (p = 1: the shard itself)
    recompute,            // `stage`'s forward again (recompute = blocks), just before its backward, same slot
    begin_gradient,       // `unit`'s gradient buffer for this micro-step (`slot`: grad buffer) is zeroed
    backward,             // `stage`: accumulate `unit`'s gradient (and the activations' chain)
    reduce_scatter,       // start summing `unit`'s micro-step gradient into this rank's shard
    wait_reduce_scatter,  // that sum is done and added to the shard's accumulator
    sum_over_replicas,    // start the all-reduce of `unit`'s accumulated shard across the replicas
    read_loss,            // the micro-step's loss (on a device: waits for its kernels)
    wait_replicas,        // every all-reduce across the replicas is done
    optimizer,            // gradient norm over the partition group, clipping, AdamW on the shards
  };
  Kind kind;
  int micro = 0;    // micro-step (or validation batch)
  int unit = -1;
  int slot = -1;    // gather slot (gather, wait_gather, forward, recompute, backward) or gradient buffer
                    // (begin_gradient)
  model::Stage stage{model::Stage::Kind::Embed, 0};  // forward, recompute, backward
};
std::string to_string(Op::Kind kind);

// Gradient buffers named by begin_gradient's slot.
inline constexpr int kAccumulatorGradient = -1;  // the shard's accumulator itself (p = 1): zeroed at micro 0 only
inline constexpr int kEmbeddingGradient = 2;     // unit 0's buffer: its gradient comes from Head and Embed
// 0 and 1: the two block buffers, alternating so one can be reduce-scattered while the next fills

struct ScheduleShape {
  int layers = 0;          // transformer blocks: units are 0 (embeddings), 1..L (blocks), L+1 (final norm)
  bool sharded = false;    // p > 1: parameters are gathered and gradients reduce-scattered
  bool replicated = false; // r > 1: accumulated shards are summed across the replicas at the last micro-step
  int micro_steps = 1;     // gradient accumulation
  config::Recompute recompute = config::Recompute::none;  // blocks: a recompute before each block's backward
};

// The operations of one optimizer step. Two gather slots: unit k+1 is gathered while unit k computes, and
// a gather is left out when its slot still holds that unit (parameters do not change within a step). At
// most one reduce-scatter is in flight (one staging buffer). A block's recompute sits in the run of its
// backward, so both use the one gather of that run.
std::vector<Op> training_step(const ScheduleShape& shape);
// Forward-only micro-steps (validation): load_batch, gathers, forwards and read_loss per batch.
std::vector<Op> evaluation(const ScheduleShape& shape, int batches);

}  // namespace mics::engine
