// Deterministic batches: what sequence i of global batch k holds depends only on (seed, k, i),
// never on how many ranks read the batch or how they split it into micro-batches.
#pragma once
#include <cstdint>
#include <vector>

#include "mics/data/token_shard.hpp"

namespace mics::data {


// Which sequence of the global batch a data-parallel worker reads. Global batch G = n * s * B:
// rank r of n workers, micro-step m of s, row b of a micro-batch of B rows reads
//   index = (m * n + r) * B + b,
// so every micro-step covers a contiguous block of n*B sequences and the union over all workers and
// micro-steps is exactly 0..G-1, whatever n, s and B are.
constexpr std::uint64_t global_sequence_index(std::uint64_t rank, std::uint64_t num_workers,
                                              std::uint64_t micro_step, std::uint64_t micro_batch,
                                              std::uint64_t row) {
  return (micro_step * num_workers + rank) * micro_batch + row;
}

class BatchSampler {
 public:
  // The dataset must outlive the sampler. Throws mics::Error naming the file when a shard holds fewer
  // than seq_len + 1 tokens.
  BatchSampler(const TokenDataset& dataset, int seq_len, std::uint64_t seed);

  int seq_len() const { return seq_len_; }
  // Start positions a sequence may take, over all shards (a sequence never crosses a shard boundary).
  std::uint64_t num_start_positions() const { return starts_.back(); }

  // Training sequence `index` of global batch `step`: T + 1 consecutive tokens from a start position
  // drawn uniformly by hash(seed, step, index). inputs = tokens[0..T), targets = tokens[1..T].
  void sequence(std::uint64_t step, std::uint64_t index_in_global_batch, std::int32_t* inputs,
                std::int32_t* targets) const;

  // Validation sequence j of `count`: start positions evenly spaced over the split (j * P / count of
  // the P start positions), the same on every run; disjoint whenever count * T <= P.
  void val_sequence(std::uint64_t j, std::uint64_t count, std::int32_t* inputs, std::int32_t* targets) const;

 private:
  void read_at(std::uint64_t start_position, std::int32_t* inputs, std::int32_t* targets) const;

  const TokenDataset* dataset_;
  int seq_len_;
  std::uint64_t seed_;
  std::vector<std::uint64_t> starts_;  // prefix sums of start positions per shard; starts_[0] = 0
};

}  // namespace mics::data
