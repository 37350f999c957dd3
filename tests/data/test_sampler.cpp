// The batch sampler: content fixed by (seed, step, index), independent of how workers split a batch.
#include "catch.hpp"
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "mics/data/sampler.hpp"
#include "mics/util/error.hpp"
#include "temp_dir.hpp"

using namespace mics::data;
using mics::test::TempDir;

namespace {

// Shard s holds tokens 1000*s + position, so a token tells where it came from.
void write_tagged_shards(const TempDir& dir, const std::vector<std::uint32_t>& sizes) {
  for (std::uint32_t s = 0; s < sizes.size(); ++s) {
    std::vector<std::uint32_t> tokens(sizes[s]);
    for (std::uint32_t i = 0; i < sizes[s]; ++i) tokens[i] = 1000 * s + i;
    char name[32];
    std::snprintf(name, sizeof(name), "train_%06u.bin", s);
    write_token_shard(dir.file(name), tokens);
  }
}

using Sequence = std::vector<std::int32_t>;

Sequence draw(const BatchSampler& sampler, std::uint64_t step, std::uint64_t index) {
  const auto t = static_cast<std::size_t>(sampler.seq_len());
  Sequence inputs(t), targets(t);
  sampler.sequence(step, index, inputs.data(), targets.data());
  for (std::size_t i = 0; i + 1 < t; ++i) REQUIRE(targets[i] == inputs[i + 1]);
  inputs.push_back(targets.back());  // the T + 1 tokens read
  return inputs;
}

}  // namespace

TEST_CASE("sampler: the same (seed, step, index) gives the same tokens", "[data][sampler]") {
  TempDir dir("sampler");
  write_tagged_shards(dir, {300, 500, 200});
  const TokenDataset data(dir.file("train_*.bin"));
  const BatchSampler a(data, 16, 42), b(data, 16, 42), other_seed(data, 16, 43);
  CHECK(a.num_start_positions() == (300 - 16) + (500 - 16) + (200 - 16));
  int differ_by_seed = 0, differ_by_step = 0;
  for (std::uint64_t i = 0; i < 32; ++i) {
    CHECK(draw(a, 5, i) == draw(b, 5, i));
    differ_by_seed += draw(a, 5, i) != draw(other_seed, 5, i);
    differ_by_step += draw(a, 5, i) != draw(a, 6, i);
  }
  // 968 start positions: two independent draws coincide with probability ~1/968 each.
  CHECK(differ_by_seed >= 30);
  CHECK(differ_by_step >= 30);
}

TEST_CASE("sampler: sequences are T+1 consecutive tokens of one shard", "[data][sampler]") {
  TempDir dir("contiguous");
  write_tagged_shards(dir, {40, 17, 90});
  const TokenDataset data(dir.file("train_*.bin"));
  const BatchSampler sampler(data, 16, 7);
  for (std::uint64_t i = 0; i < 500; ++i) {
    const Sequence s = draw(sampler, 0, i);
    for (std::size_t j = 1; j < s.size(); ++j) REQUIRE(s[j] == s[0] + static_cast<std::int32_t>(j));
  }
}

TEST_CASE("sampler: start positions are uniform over all shards", "[data][sampler]") {
  TempDir dir("uniform");
  write_tagged_shards(dir, {10, 20});  // T = 4: 6 + 16 = 22 start positions
  const TokenDataset data(dir.file("train_*.bin"));
  const BatchSampler sampler(data, 4, 2024);
  REQUIRE(sampler.num_start_positions() == 22);
  std::map<std::int32_t, int> hits;
  const int draws = 22000;
  for (int i = 0; i < draws; ++i) ++hits[draw(sampler, static_cast<std::uint64_t>(i / 64), i % 64)[0]];
  REQUIRE(hits.size() == 22);
  // Each count is Binomial(22000, 1/22): mean 1000, sd ~31; 200 is more than 6 sd.
  for (const auto& [start, count] : hits) {
    INFO("start token " << start);
    CHECK(std::abs(count - 1000) < 200);
  }
}

TEST_CASE("sampler: n workers x s micro-steps cover the global batch exactly", "[data][sampler]") {
  TempDir dir("workers");
  write_tagged_shards(dir, {1000, 700});
  const TokenDataset data(dir.file("train_*.bin"));
  const BatchSampler sampler(data, 8, 99);
  const std::uint64_t global_batch = 24, step = 3;
  std::vector<Sequence> single(global_batch);
  for (std::uint64_t i = 0; i < global_batch; ++i) single[i] = draw(sampler, step, i);

  struct Split { std::uint64_t workers, micro_steps, micro_batch; };
  for (const Split split : {Split{1, 1, 24}, Split{2, 3, 4}, Split{4, 2, 3}, Split{3, 8, 1}, Split{24, 1, 1}}) {
    INFO("workers " << split.workers << " micro-steps " << split.micro_steps << " rows " << split.micro_batch);
    std::map<std::uint64_t, Sequence> seen;
    for (std::uint64_t r = 0; r < split.workers; ++r) {
      for (std::uint64_t m = 0; m < split.micro_steps; ++m) {
        for (std::uint64_t b = 0; b < split.micro_batch; ++b) {
          const std::uint64_t index = global_sequence_index(r, split.workers, m, split.micro_batch, b);
          CHECK(seen.emplace(index, draw(sampler, step, index)).second);  // no index read twice
        }
      }
    }
    REQUIRE(seen.size() == global_batch);
    for (std::uint64_t i = 0; i < global_batch; ++i) {
      REQUIRE(seen.count(i) == 1);
      CHECK(seen[i] == single[i]);
    }
  }
  CHECK(global_sequence_index(1, 2, 1, 4, 3) == (1 * 2 + 1) * 4 + 3);
}

TEST_CASE("sampler: validation sequences are fixed and evenly spaced", "[data][sampler]") {
  TempDir dir("val");
  write_tagged_shards(dir, {50, 30});  // T = 10: 40 + 20 = 60 start positions
  const TokenDataset data(dir.file("train_*.bin"));
  const BatchSampler sampler(data, 10, 1), other_seed(data, 10, 2);
  std::vector<std::int32_t> in(10), tgt(10), in2(10), tgt2(10);
  // 3 of 60: start positions 0, 20, 40 -> shard 0 at 0 and 20, shard 1 at 0.
  const std::int32_t expected_first[3] = {0, 20, 1000};
  for (std::uint64_t j = 0; j < 3; ++j) {
    sampler.val_sequence(j, 3, in.data(), tgt.data());
    other_seed.val_sequence(j, 3, in2.data(), tgt2.data());
    CHECK(in[0] == expected_first[j]);
    CHECK(tgt[9] == expected_first[j] + 10);
    CHECK(in == in2);  // the seed only drives training draws
  }
  // count = every start position: each one exactly once.
  std::set<std::int32_t> firsts;
  for (std::uint64_t j = 0; j < 60; ++j) {
    sampler.val_sequence(j, 60, in.data(), tgt.data());
    firsts.insert(in[0]);
  }
  CHECK(firsts.size() == 60);
  CHECK_THROWS_AS(sampler.val_sequence(3, 3, in.data(), tgt.data()), mics::Error);
}

TEST_CASE("sampler: a shard too small for one sequence names the file", "[data][sampler]") {
  TempDir dir("small");
  write_tagged_shards(dir, {100, 16});
  const TokenDataset data(dir.file("train_*.bin"));
  CHECK_NOTHROW(BatchSampler(data, 15, 0));  // 16 tokens = T + 1: exactly one start
  CHECK_THROWS_WITH(BatchSampler(data, 16, 0),
                    Catch::Contains("train_000001.bin") && Catch::Contains("too small") && Catch::Contains("17"));
}

TEST_CASE("sampler: data.order = sequential reads the documented windows", "[data][sampler]") {
  TempDir dir("sequential");
  // G = 4 sequences of T = 8 per step: 32 tokens a step, a window of 33.
  // shard 0: 100 tokens -> floor(99 / 32) = 3 steps; shard 1: 40 -> 1 step; shard 2: 20 -> 0 (too small)
  write_tagged_shards(dir, {100, 40, 20});
  const TokenDataset data(dir.file("train_*.bin"));
  const int T = 8;
  const std::uint64_t G = 4;
  const BatchSampler sampler(data, T, 42, Order::sequential, G);
  REQUIRE(sampler.steps_per_epoch() == 4);
  const auto expect = [&](std::uint64_t step, std::uint64_t index, std::uint32_t shard, std::uint32_t first) {
    Sequence want;
    for (std::uint32_t i = 0; i <= static_cast<std::uint32_t>(T); ++i) want.push_back(static_cast<std::int32_t>(1000 * shard + first + i));
    INFO("step " << step << " index " << index);
    CHECK(draw(sampler, step, index) == want);
  };
  for (std::uint64_t i = 0; i < G; ++i) {
    expect(0, i, 0, static_cast<std::uint32_t>(i * T));       // tokens [i*T, i*T + T]
    expect(2, i, 0, static_cast<std::uint32_t>(64 + i * T));  // third window of shard 0
    expect(3, i, 1, static_cast<std::uint32_t>(i * T));       // shard 0's tail (tokens 96..99) skipped
    expect(4, i, 0, static_cast<std::uint32_t>(i * T));       // the next epoch starts over
  }
  // One rank's micro-batch of B rows is one window of B*T + 1 tokens (llm.c's DataLoader): rank r of n
  // at micro-step m starts at (m*n + r)*B*T.
  const std::uint64_t B = 2, n = 2;
  for (std::uint64_t m = 0; m < G / (B * n); ++m)
    for (std::uint64_t r = 0; r < n; ++r) {
      Sequence window;
      for (std::uint64_t b = 0; b < B; ++b) {
        Sequence rows = draw(sampler, 1, global_sequence_index(r, n, m, B, b));
        if (!window.empty()) {
          REQUIRE(window.back() == rows.front());  // consecutive rows share one token
          window.pop_back();
        }
        window.insert(window.end(), rows.begin(), rows.end());
      }
      CHECK(window.size() == B * T + 1);
      CHECK(window.front() == static_cast<std::int32_t>(32 + (m * n + r) * B * T));
    }
  // the window depends on the step and the index only, never on the layout
  CHECK(sampler.sequential_window(1, 3).first_token == 32 + 3 * T);
  CHECK_THROWS_AS(sampler.sequential_window(0, G), mics::InternalError);
}

TEST_CASE("sampler: data.order = sequential refuses shards smaller than one step", "[data][sampler]") {
  TempDir dir("sequential_small");
  write_tagged_shards(dir, {50, 60});
  const TokenDataset data(dir.file("train_*.bin"));
  CHECK_THROWS_AS(BatchSampler(data, 8, 1, Order::sequential, 8), mics::InputError);  // needs 65 tokens
  CHECK_NOTHROW(BatchSampler(data, 8, 1, Order::shuffle, 8));
}
