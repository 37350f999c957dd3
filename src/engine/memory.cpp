#include "mics/engine/memory.hpp"

#include <algorithm>

#include "mics/util/bf16.hpp"

namespace mics::engine {

MemoryReport expected_memory(const model::ParamLayout& layout, int p, bool gather_bf16,
                             const ActivationShape& activations) {
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
  r.activations = model::Gpt::activation_bytes(layout.shape(), activations.micro_batch, activations.seq_len,
                                               activations.recompute);
  return r;
}

}  // namespace mics::engine
