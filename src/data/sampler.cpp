#include "mics/data/sampler.hpp"

#include <algorithm>
#include <string>

#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"
#include "mics/util/splitmix.hpp"

namespace mics::data {

BatchSampler::BatchSampler(const TokenDataset& dataset, int seq_len, std::uint64_t seed, Order order,
                           std::uint64_t sequences_per_step)
    : dataset_(&dataset), seq_len_(seq_len), seed_(seed), order_(order), sequences_per_step_(sequences_per_step) {
  if (seq_len < 1) throw InputError("batch sampler: sequence length must be >= 1, got " + std::to_string(seq_len));
  const auto needed = static_cast<std::size_t>(seq_len) + 1;
  starts_.reserve(dataset.shards().size() + 1);
  starts_.push_back(0);
  for (const TokenShard& shard : dataset.shards()) {
    if (shard.size() < needed) {
      throw InputError("token shard " + printable(shard.path()) + ": too small: " + std::to_string(shard.size()) +
                  " tokens, but one sequence needs seq_len + 1 = " + std::to_string(needed));
    }
    starts_.push_back(starts_.back() + (shard.size() - needed + 1));
  }
  if (starts_.size() < 2) throw InputError("batch sampler: no shards in " + printable(dataset.pattern()));
  if (order_ != Order::sequential) return;
  if (sequences_per_step_ == 0) throw InputError("batch sampler: data.order = sequential needs the global batch");
  const std::uint64_t step_tokens = sequences_per_step_ * static_cast<std::uint64_t>(seq_len);
  steps_prefix_.push_back(0);
  for (const TokenShard& shard : dataset.shards())
    steps_prefix_.push_back(steps_prefix_.back() + (shard.size() > step_tokens ? (shard.size() - 1) / step_tokens : 0));
  if (steps_prefix_.back() == 0)
    throw InputError("data.order = sequential: no shard of " + printable(dataset.pattern()) + " holds one step of " +
                     std::to_string(sequences_per_step_) + " sequences x " + std::to_string(seq_len) +
                     " tokens + 1 (make the global batch smaller, or use data.order = shuffle)");
}

BatchSampler::Window BatchSampler::sequential_window(std::uint64_t step, std::uint64_t index) const {
  if (order_ != Order::sequential || index >= sequences_per_step_)
    throw InternalError("batch sampler: sequential window of sequence " + std::to_string(index) + " of " +
                        std::to_string(sequences_per_step_));
  const std::uint64_t e = step % steps_per_epoch();
  const auto it = std::upper_bound(steps_prefix_.begin(), steps_prefix_.end(), e);
  const auto shard = static_cast<std::size_t>(it - steps_prefix_.begin()) - 1;
  const std::uint64_t T = static_cast<std::uint64_t>(seq_len_);
  return Window{shard, (e - steps_prefix_[shard]) * sequences_per_step_ * T + index * T};
}

void BatchSampler::read_at(std::uint64_t position, std::int32_t* inputs, std::int32_t* targets) const {
  // The shard whose range [starts_[s], starts_[s+1]) holds the position.
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), position);
  const auto shard_index = static_cast<std::size_t>(it - starts_.begin()) - 1;
  const TokenShard& shard = dataset_->shards()[shard_index];
  const std::size_t offset = position - starts_[shard_index];
  const auto t = static_cast<std::size_t>(seq_len_);
  shard.copy_sequence(offset, t, inputs, targets);
}

void BatchSampler::sequence(std::uint64_t step, std::uint64_t index_in_global_batch, std::int32_t* inputs,
                            std::int32_t* targets) const {
  if (order_ == Order::sequential) {
    const Window w = sequential_window(step, index_in_global_batch);
    const TokenShard& shard = dataset_->shards()[w.shard];
    shard.copy_sequence(w.first_token, static_cast<std::size_t>(seq_len_), inputs, targets);
    return;
  }
  // Counter-based: hash the (seed, step, index) triple, each mixed in before the next.
  const std::uint64_t h = splitmix64(splitmix64(splitmix64(seed_) ^ step) ^ index_in_global_batch);
  read_at(scale_to(h, num_start_positions()), inputs, targets);
}

void BatchSampler::val_sequence(std::uint64_t j, std::uint64_t count, std::int32_t* inputs,
                                std::int32_t* targets) const {
  if (count == 0 || j >= count)
    throw InputError("batch sampler: validation sequence " + std::to_string(j) + " of " + std::to_string(count));
  const auto position =
      static_cast<std::uint64_t>(static_cast<unsigned __int128>(j) * num_start_positions() / count);
  read_at(position, inputs, targets);
}

}  // namespace mics::data
