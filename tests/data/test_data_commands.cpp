// `mics data prepare` and `mics data synth`, plus the Markov chain behind synth.
#include <algorithm>
#include "catch.hpp"
#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include "mics/data/commands.hpp"
#include "mics/data/markov.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/util/error.hpp"
#include "temp_dir.hpp"

using namespace mics::data;
using mics::test::TempDir;

namespace {

std::vector<std::uint32_t> read_all(const std::string& pattern) {
  const TokenDataset data(pattern);
  std::vector<std::uint32_t> tokens;
  for (const TokenShard& shard : data.shards())
    for (std::size_t i = 0; i < shard.size(); ++i) tokens.push_back(shard.token(i));
  return tokens;
}

// Runs `mics data prepare` or `synth` through the data area (the command line itself is the mics
// command's: tests/cli); its errors propagate as they would to the CLI.
std::string prepare(const std::string& text, const std::string& out_dir, ShardOptions shards = {}) {
  std::ostringstream out;
  prepare_text(text, out_dir, shards, out);
  return out.str();
}

}  // namespace

TEST_CASE("data prepare: bytes become tokens, the tail becomes val", "[data][commands]") {
  TempDir dir("prepare");
  std::string text;
  for (int i = 0; i < 1000; ++i) text.push_back(static_cast<char>((i * 37) % 256));  // every byte value
  const std::string text_path = dir.file("input.txt");
  std::ofstream(text_path, std::ios::binary) << text;
  const std::string out_dir = dir.file("tokens");

  ShardOptions shards;
  shards.val_fraction = 0.25;
  shards.shard_tokens = 300;
  const std::string printed = prepare(text_path, out_dir, shards);
  CHECK_THAT(printed, Catch::Contains("wrote 750 train tokens") && Catch::Contains("(3 shards)") &&
                          Catch::Contains("wrote 250 val tokens"));
  const auto train = read_all(out_dir + "/train_*.bin");
  const auto val = read_all(out_dir + "/val_*.bin");
  REQUIRE(train.size() == 750);
  REQUIRE(val.size() == 250);
  for (std::size_t i = 0; i < 1000; ++i) {
    const std::uint32_t token = i < 750 ? train[i] : val[i - 750];
    REQUIRE(token == static_cast<unsigned char>(text[i]));
  }

  // A second run would mix old and new shards under one glob: refused unless forced.
  CHECK_THROWS_WITH(prepare(text_path, out_dir), Catch::Contains("already holds token shards"));
  ShardOptions forced;
  forced.val_fraction = 0.5;
  forced.force = true;
  prepare(text_path, out_dir, forced);
  CHECK(read_all(out_dir + "/train_*.bin").size() == 500);
  CHECK(read_all(out_dir + "/val_*.bin").size() == 500);

  CHECK_THROWS_WITH(prepare(dir.file("absent.txt"), out_dir), Catch::Contains("absent.txt"));
}

TEST_CASE("markov chain: a two-state chain matches its closed form", "[data][markov]") {
  // Two states, two successors each: state s goes to 1-s with probability a_s and stays otherwise.
  const MarkovChain chain(2, 2, 5);
  const double a0 = chain.probability(0, 0), a1 = chain.probability(1, 0);  // successor 0 is s+1 mod 2
  REQUIRE(chain.successor(0, 0) == 1);
  REQUIRE(chain.successor(1, 0) == 0);
  // Balance pi0 a0 = pi1 a1.
  const double pi0 = a1 / (a0 + a1), pi1 = a0 / (a0 + a1);
  CHECK(chain.stationary()[0] == Approx(pi0).epsilon(1e-10));
  CHECK(chain.stationary()[1] == Approx(pi1).epsilon(1e-10));
  const auto h = [](double p) { return -p * std::log(p) - (1 - p) * std::log(1 - p); };
  CHECK(chain.entropy_rate() == Approx(pi0 * h(a0) + pi1 * h(a1)).epsilon(1e-10));
}

TEST_CASE("markov chain: stationary distribution is a fixed point; rows sum to 1", "[data][markov]") {
  const MarkovChain chain(64, 4, 11);
  std::vector<double> moved(64, 0.0);
  for (std::uint32_t s = 0; s < 64; ++s) {
    double row = 0.0;
    for (std::uint32_t k = 0; k < 4; ++k) {
      row += chain.probability(s, k);
      moved[chain.successor(s, k)] += chain.stationary()[s] * chain.probability(s, k);
    }
    CHECK(row == Approx(1.0).epsilon(1e-12));
  }
  for (std::uint32_t s = 0; s < 64; ++s) CHECK(moved[s] == Approx(chain.stationary()[s]).epsilon(1e-9));
  // K successors with weights in [0.1, 1): entropy between 0 and ln K.
  CHECK(chain.entropy_rate() > 0.0);
  CHECK(chain.entropy_rate() < std::log(4.0));
}

TEST_CASE("data synth: the printed floor is the sample's conditional entropy", "[data][commands][markov]") {
  TempDir dir("synth");
  const std::string out_dir = dir.file("synth");
  const std::size_t n = 1000000;
  SynthOptions synth;
  synth.tokens = n;
  synth.vocab = 64;
  synth.branching = 4;
  synth.seed = 77;
  std::ostringstream out;
  synth_markov(out_dir, synth, ShardOptions{}, out);
  const std::string printed = out.str();
  std::smatch match;
  REQUIRE(std::regex_search(printed, match, std::regex("entropy floor: ([0-9.]+) nats/token")));
  const double floor = std::stod(match[1]);
  CHECK(floor == Approx(MarkovChain(64, 4, 77).entropy_rate()).margin(1e-6));

  // The corpus is the train head then the val tail of one walk.
  std::vector<std::uint32_t> tokens = read_all(out_dir + "/train_*.bin");
  const auto val = read_all(out_dir + "/val_*.bin");
  CHECK(tokens.size() == 900000);
  CHECK(val.size() == 100000);
  tokens.insert(tokens.end(), val.begin(), val.end());

  // Plug-in estimate of H(next | current) from transition counts.
  std::vector<double> pair_count(64 * 64, 0.0), state_count(64, 0.0);
  REQUIRE(std::all_of(tokens.begin(), tokens.end(), [](std::uint32_t t) { return t < 64; }));
  for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
    pair_count[tokens[i] * 64 + tokens[i + 1]] += 1;
    state_count[tokens[i]] += 1;
  }
  const double transitions = static_cast<double>(tokens.size() - 1);
  double empirical = 0.0;
  for (std::uint32_t a = 0; a < 64; ++a)
    for (std::uint32_t b = 0; b < 64; ++b)
      if (const double c = pair_count[a * 64 + b]; c > 0) empirical -= c / transitions * std::log(c / state_count[a]);
  // Tolerance: the plug-in estimator is biased low by about (64*4 - 64)/(2N) ~ 1e-4; its spread is
  // sqrt(Var(surprisal)/N) with surprisal in [0, ln(1/p_min)], p_min >= 0.1/3.1 (weights in [0.1, 1)),
  // so Var <= 3.43^2/4 and sd <= 0.0017 for independent terms; 0.015 leaves room for the chain's
  // (fast) mixing to inflate that several times while still catching a wrong floor.
  CHECK(empirical == Approx(floor).margin(0.015));

  // Same seed, same corpus.
  const std::string again = dir.file("again");
  SynthOptions small;
  small.tokens = 5000;
  small.vocab = 64;
  small.seed = 77;
  std::ostringstream ignored;
  synth_markov(again, small, ShardOptions{}, ignored);
  synth_markov(dir.file("again2"), small, ShardOptions{}, ignored);
  CHECK(read_all(again + "/train_*.bin") == read_all(dir.file("again2") + "/train_*.bin"));
}
