// Counter-based hashing shared by the data sampler, the synthetic corpus and the parameter init: the
// values are fixed by the algorithm (unlike <random>'s distributions), so every rank and every build
// derives the same numbers from the same counters.
#pragma once
#include <cstdint>

namespace mics {

// splitmix64 finalizer.
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// floor(x * n / 2^64): a uniform 64-bit x mapped onto [0, n) without modulo's cost; the bias is at most
// n / 2^64.
constexpr std::uint64_t scale_to(std::uint64_t x, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(x) * n) >> 64);
}

}  // namespace mics
