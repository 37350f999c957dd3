#include "mics/data/markov.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

#include "mics/util/error.hpp"
#include "mics/util/splitmix.hpp"

namespace mics::data {

namespace {

// A splitmix64 stream: the generator's output is fixed by the algorithm, unlike <random>'s
// distributions, so a seed gives the same corpus everywhere.
class SplitMixStream {
 public:
  explicit SplitMixStream(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return splitmix64(state_);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(scale_to(next(), n));
  }

 private:
  std::uint64_t state_;
};

}  // namespace

MarkovChain::MarkovChain(std::uint32_t vocab, std::uint32_t branching, std::uint64_t seed)
    : vocab_(vocab), branching_(branching) {
  if (vocab < 1) throw InputError("markov chain: vocab must be >= 1");
  if (branching < 1 || branching > vocab)
    throw InputError("markov chain: branching must be in [1, vocab = " + std::to_string(vocab) + "], got " +
                std::to_string(branching));
  SplitMixStream rng(seed);
  next_.resize(static_cast<std::size_t>(vocab) * branching);
  prob_.resize(next_.size());
  for (std::uint32_t s = 0; s < vocab; ++s) {
    std::uint32_t* row = &next_[static_cast<std::size_t>(s) * branching];
    row[0] = (s + 1) % vocab;  // the cycle 0 -> 1 -> ... -> 0 makes every state reachable
    std::unordered_set<std::uint32_t> taken{row[0]};
    for (std::uint32_t k = 1; k < branching; ++k) {
      std::uint32_t candidate = rng.below(vocab);
      while (taken.count(candidate) != 0) candidate = rng.below(vocab);
      taken.insert(candidate);
      row[k] = candidate;
    }
    // Weights in [0.1, 1): every successor keeps a real share, so all transitions are observable.
    double* p = &prob_[static_cast<std::size_t>(s) * branching];
    double sum = 0.0;
    for (std::uint32_t k = 0; k < branching; ++k) sum += (p[k] = 0.1 + 0.9 * rng.uniform());
    for (std::uint32_t k = 0; k < branching; ++k) p[k] /= sum;
  }

  // Lazy power iteration pi <- (pi + pi P) / 2: same fixed point, and it converges even for a periodic
  // chain (the lazy chain is aperiodic).
  stationary_.assign(vocab, 1.0 / vocab);
  std::vector<double> moved(vocab);
  for (int iteration = 0; iteration < 100000; ++iteration) {
    std::fill(moved.begin(), moved.end(), 0.0);
    for (std::uint32_t s = 0; s < vocab; ++s) {
      for (std::uint32_t k = 0; k < branching; ++k) moved[successor(s, k)] += stationary_[s] * probability(s, k);
    }
    double change = 0.0, total = 0.0;
    for (std::uint32_t s = 0; s < vocab; ++s) {
      const double updated = 0.5 * (stationary_[s] + moved[s]);
      change += std::abs(updated - stationary_[s]);
      total += updated;
      stationary_[s] = updated;
    }
    for (double& x : stationary_) x /= total;  // keep rounding from drifting the mass
    if (change < 1e-14) break;
  }
}

double MarkovChain::entropy_rate() const {
  double rate = 0.0;
  for (std::uint32_t s = 0; s < vocab_; ++s) {
    double h = 0.0;
    for (std::uint32_t k = 0; k < branching_; ++k) h -= probability(s, k) * std::log(probability(s, k));
    rate += stationary_[s] * h;
  }
  return rate;
}

std::vector<std::uint32_t> MarkovChain::sample(std::size_t n, std::uint64_t seed) const {
  SplitMixStream rng(seed);
  std::vector<std::uint32_t> tokens;
  tokens.reserve(n);
  if (n == 0) return tokens;
  // First token from the stationary distribution: the whole sample is then stationary.
  double u = rng.uniform();
  std::uint32_t state = vocab_ - 1;
  for (std::uint32_t s = 0; s < vocab_; ++s) {
    if ((u -= stationary_[s]) < 0.0) {
      state = s;
      break;
    }
  }
  tokens.push_back(state);
  while (tokens.size() < n) {
    u = rng.uniform();
    std::uint32_t k = 0;
    while (k + 1 < branching_ && (u -= probability(state, k)) >= 0.0) ++k;
    state = successor(state, k);
    tokens.push_back(state);
  }
  return tokens;
}

}  // namespace mics::data
