#include "mics/engine/sharding.hpp"

#include <algorithm>

namespace mics::engine {

bool decays(const model::TensorInfo& tensor) { return tensor.shape.size() >= 2; }

std::vector<UnitSharding> shard_units(const model::ParamLayout& layout, int p, int q) {
  std::vector<UnitSharding> out;
  out.reserve(layout.units().size());
  const auto P = static_cast<std::size_t>(p);
  for (const model::UnitInfo& unit : layout.units()) {
    UnitSharding s;
    s.numel = unit.numel;
    s.padded_numel = (unit.numel + P - 1) / P * P;
    s.shard_numel = s.padded_numel / P;
    s.shard_begin = static_cast<std::size_t>(q) * s.shard_numel;
    const std::size_t shard_end = s.shard_begin + s.shard_numel;
    // Intersect [shard_begin, shard_end) with every tensor's range, merging neighbours of equal decay.
    auto push = [&s](std::size_t offset, std::size_t length, bool decay) {
      if (length == 0) return;
      if (!s.segments.empty() && s.segments.back().decay == decay &&
          s.segments.back().offset + s.segments.back().length == offset) {
        s.segments.back().length += length;
      } else {
        s.segments.push_back({offset, length, decay});
      }
    };
    for (int index : unit.tensors) {
      const model::TensorInfo& t = layout.tensors()[static_cast<std::size_t>(index)];
      const std::size_t begin = std::max(t.offset, s.shard_begin);
      const std::size_t end = std::min(t.offset + t.numel, shard_end);
      if (begin < end) push(begin - s.shard_begin, end - begin, decays(t));
    }
    const std::size_t real_end = std::min(s.numel, shard_end);
    const std::size_t pad_begin = std::max(real_end, s.shard_begin);
    push(pad_begin - s.shard_begin, shard_end - pad_begin, false);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace mics::engine
