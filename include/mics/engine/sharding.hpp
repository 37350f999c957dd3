// How a unit's flat buffer is cut into p shards: padded to a multiple of p, rank q of the partition group
// owns elements [q*shard, (q+1)*shard). The optimizer needs to know which parts of a shard are weights
// that decay (matrices and embeddings, as GPT-2 and llm.c do) and which are not (biases, layernorms).
#pragma once
#include <cstddef>
#include <vector>

#include "mics/model/gpt.hpp"

namespace mics::engine {

struct ShardSegment {
  std::size_t offset = 0;  // within the shard
  std::size_t length = 0;
  bool decay = false;
};

struct UnitSharding {
  std::size_t numel = 0;         // real elements of the unit
  std::size_t padded_numel = 0;  // numel rounded up to a multiple of p
  std::size_t shard_numel = 0;   // padded_numel / p
  std::size_t shard_begin = 0;   // this rank's first element in the unit
  std::vector<ShardSegment> segments;  // cover [0, shard_numel), in order; padding is a no-decay segment
};

// Sharding of every unit of `layout` for partition index q of p.
std::vector<UnitSharding> shard_units(const model::ParamLayout& layout, int p, int q);

// Weight decay applies to tensors of two or more dimensions.
bool decays(const model::TensorInfo& tensor);

}  // namespace mics::engine
