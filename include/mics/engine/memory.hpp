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
  std::size_t total() const { return model_states + gathered + gradients + staging; }
};

// What Engine::memory() will report for `layout` sharded over p ranks: 16 bytes per padded parameter / p,
// plus (p > 1) two gathered units of the largest size, two block gradient buffers and the embedding's, and
// one staging shard.
MemoryReport expected_memory(const model::ParamLayout& layout, int p, bool gather_bf16);

}  // namespace mics::engine
