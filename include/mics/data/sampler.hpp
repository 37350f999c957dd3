// Deterministic batches: what sequence i of global batch k holds depends only on (seed, k, i),
// never on how many ranks read the batch or how they split it into micro-batches.
#pragma once
#include <cstdint>
#include <vector>

#include "mics/config/options.hpp"
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

// data.order = sequential: the shards are read in order, llm.c style. With G sequences per global batch
// (sequences_per_step) and T = seq_len, step s reads one window of G*T + 1 tokens from one shard:
//   a shard of n tokens holds E_j = floor((n - 1) / (G*T)) steps (its tail shorter than a step is
//   skipped), the epoch is E = sum E_j steps, e = s mod E, j the shard with P_j <= e < P_j + E_j
//   (P_j = E_0 + ... + E_{j-1}), and the window starts at token w = (e - P_j) * G*T of shard j.
//   Sequence i of the global batch is tokens [w + i*T, w + i*T + T] (inputs the first T, targets the
//   last T). Rank r at micro-step m reads sequences (m*n + r)*B .. +B-1 (global_sequence_index): one
//   window of B*T + 1 tokens starting at w + (m*n + r)*B*T -- llm.c's DataLoader, which starts rank r
//   at r*B*T and advances n*B*T per micro-step. The batch depends on (s, i) only: the same for every
//   world size, micro-batch and accumulation that give the same G.
using Order = config::DataOptions::Order;

class BatchSampler {
 public:
  // The dataset must outlive the sampler. Throws mics::Error naming the file when a shard holds fewer
  // than seq_len + 1 tokens. Order::sequential needs sequences_per_step (G) and a shard of at least
  // G*T + 1 tokens (else InputError).
  BatchSampler(const TokenDataset& dataset, int seq_len, std::uint64_t seed, Order order = Order::shuffle,
               std::uint64_t sequences_per_step = 0);

  Order order() const { return order_; }
  // sequential: steps in one pass over the shards (E above); 0 for shuffle.
  std::uint64_t steps_per_epoch() const { return steps_prefix_.empty() ? 0 : steps_prefix_.back(); }
  struct Window {
    std::size_t shard;
    std::uint64_t first_token;  // of sequence `index`: tokens [first_token, first_token + T]
  };
  // sequential: where sequence `index` of global batch `step` is read.
  Window sequential_window(std::uint64_t step, std::uint64_t index_in_global_batch) const;

  int seq_len() const { return seq_len_; }
  // Start positions a sequence may take, over all shards (a sequence never crosses a shard boundary).
  std::uint64_t num_start_positions() const { return starts_.back(); }

  // Training sequence `index` of global batch `step`: T + 1 consecutive tokens from a start position
  // drawn uniformly by hash(seed, step, index) (shuffle), or the window above (sequential).
  // inputs = tokens[0..T), targets = tokens[1..T].
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
  Order order_ = Order::shuffle;
  std::uint64_t sequences_per_step_ = 0;
  std::vector<std::uint64_t> steps_prefix_;  // sequential: P_j, with P_{shards} = E last
};

}  // namespace mics::data
