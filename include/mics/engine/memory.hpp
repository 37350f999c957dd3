// The engine's memory per rank, from the sizes alone (before anything is allocated) and as allocated.
#pragma once
#include <cstddef>

#include "mics/model/gpt.hpp"

namespace mics::engine {

// Bytes this rank holds, by purpose (all fp32 on the CPU backend).
struct MemoryReport {
  std::size_t model_states = 0;  // master weights, Adam m and v, gradient accumulator: 16 B/param / p
  std::size_t gathered = 0;      // working set of gathered parameters (prefetch included), and with
                                 // bf16 gathers their bf16 slots and this rank's bf16 shard copies
  std::size_t gradients = 0;     // full-unit gradient buffers awaiting reduce-scatter
  std::size_t staging = 0;       // reduce-scatter outputs before accumulation
  std::size_t activations = 0;   // one micro-batch's activations and backward scratch (model::Gpt), not
                                 // sharded: every block's, or with recompute = blocks each block's input
                                 // plus one block's (docs/algorithms.md#activation-recomputation)
  std::size_t total() const { return model_states + gathered + gradients + staging + activations; }
};

// The micro-batch whose activations a rank holds.
struct ActivationShape {
  int micro_batch = 1;  // B
  int seq_len = 1;      // T
  config::Recompute recompute = config::Recompute::none;
};

// What Engine::memory() will report for `layout` sharded over p ranks: 16 bytes per padded parameter / p,
// plus (p > 1) two gathered units of the largest size, two block gradient buffers and the embedding's, and
// one staging shard; and the activations of one micro-batch (model::Gpt::activation_bytes). Computed from
// the sizes alone, before anything is allocated.
MemoryReport expected_memory(const model::ParamLayout& layout, int p, bool gather_bf16,
                             const ActivationShape& activations);

}  // namespace mics::engine
