// A seeded random order-1 Markov chain over a token vocabulary: the synthetic corpus whose best
// achievable loss is known exactly (its entropy rate), so training can be judged against a floor.
#pragma once
#include <cstdint>
#include <vector>

namespace mics::data {

class MarkovChain {
 public:
  // Every state gets `branching` distinct successors with random probabilities. Successor 0 of state s
  // is (s + 1) mod vocab, so the chain is irreducible (ergodic); the stationary distribution is found
  // with a lazy power iteration, which converges even if the chain happens to be periodic.
  // Throws mics::Error unless 1 <= branching <= vocab and vocab >= 1.
  MarkovChain(std::uint32_t vocab, std::uint32_t branching, std::uint64_t seed);

  std::uint32_t vocab() const { return vocab_; }
  std::uint32_t branching() const { return branching_; }
  // Successor k of state s and its probability.
  std::uint32_t successor(std::uint32_t s, std::uint32_t k) const { return next_[s * branching_ + k]; }
  double probability(std::uint32_t s, std::uint32_t k) const { return prob_[s * branching_ + k]; }
  const std::vector<double>& stationary() const { return stationary_; }

  // Entropy rate sum_s pi(s) H(next | s) in nats per token: the loss floor of a perfect model.
  double entropy_rate() const;

  // n tokens of a walk started from the stationary distribution, drawn from a splitmix64 stream of
  // `seed` (reproducible on every platform).
  std::vector<std::uint32_t> sample(std::size_t n, std::uint64_t seed) const;

 private:
  std::uint32_t vocab_;
  std::uint32_t branching_;
  std::vector<std::uint32_t> next_;  // vocab x branching
  std::vector<double> prob_;         // vocab x branching, each row sums to 1
  std::vector<double> stationary_;
};

}  // namespace mics::data
