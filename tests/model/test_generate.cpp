// Generation with a key/value cache: greedy tokens equal the argmax of the plain forward pass at every
// position, token for token; the plain forward agrees with the training forward's loss.
#include <catch2/catch.hpp>

#include <cmath>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/model/generate.hpp"
#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

using namespace mics;
using namespace mics::model;
using backends::Buffer;
using backends::cpu::CpuBackend;

namespace {

const GptShape kShape{2, 2, 32, 61, 128, 24};  // L, NH, C, V, Vp, maxT

struct Weights {
  std::vector<Buffer<float>> units;
  UnitParams params;
  Weights(backends::Backend& be, Gpt& gpt, std::uint64_t seed) {
    for (std::size_t u = 0; u < gpt.layout().units().size(); ++u) {
      units.push_back(be.alloc<float>(gpt.layout().units()[u].numel));
      gpt.init_unit(static_cast<int>(u), units.back().data(), seed);
      params.push_back(units.back().data());
    }
  }
};

}  // namespace

TEST_CASE("generate: greedy tokens with the KV cache equal the plain forward's argmax", "[model][generate]") {
  CpuBackend be(2);
  Gpt gpt(kShape, be, 1, kShape.max_seq_len);
  const Weights w(be, gpt, 5);
  const std::vector<std::int32_t> prompt = {3, 14, 15, 9, 2};
  Generator generator(kShape, be, w.params, kShape.max_seq_len);
  TokenSampler greedy(SamplingOptions{0.0, 0, 1});
  const std::vector<std::int32_t> out = generate(generator, prompt, 100, greedy);
  REQUIRE(out.size() == static_cast<std::size_t>(kShape.max_seq_len) - prompt.size() + 1);  // stops when full

  std::vector<std::int32_t> sequence = prompt;
  sequence.insert(sequence.end(), out.begin(), out.end() - 1);
  const std::vector<float> logits = forward_logits(kShape, be, w.params, sequence);
  const std::size_t V = static_cast<std::size_t>(kShape.vocab);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::size_t position = prompt.size() - 1 + i;
    INFO("generated token " << i);
    CHECK(argmax(std::span<const float>(logits).subspan(position * V, V)) == out[i]);
  }

  // the cached logits themselves match the full forward's, position by position
  Generator again(kShape, be, w.params, kShape.max_seq_len);
  double worst = 0;
  for (std::size_t t = 0; t < sequence.size(); ++t) {
    const std::span<const float> row = again.feed(sequence[t]);
    for (std::size_t v = 0; v < V; ++v) worst = std::max(worst, std::abs(double(row[v]) - logits[t * V + v]));
  }
  CHECK(worst < 1e-4);
}

TEST_CASE("generate: the plain forward gives the training forward's loss", "[model][generate]") {
  CpuBackend be(1);
  const int T = 16;
  Gpt gpt(kShape, be, 1, T);
  const Weights w(be, gpt, 9);
  std::vector<std::int32_t> inputs(T), targets(T);
  for (int t = 0; t < T; ++t) inputs[t] = (7 * t + 3) % kShape.vocab, targets[t] = (5 * t + 1) % kShape.vocab;
  gpt.set_batch(inputs.data(), targets.data());
  std::vector<const float*> unit_params(w.params.begin(), w.params.end());
  const float train_loss = forward_backward(gpt, unit_params, {});
  const std::vector<float> logits = forward_logits(kShape, be, w.params, inputs);
  double loss = 0;
  for (int t = 0; t < T; ++t) {
    const float* row = logits.data() + static_cast<std::size_t>(t) * kShape.vocab;
    double top = row[0], sum = 0;
    for (int v = 0; v < kShape.vocab; ++v) top = std::max(top, double(row[v]));
    for (int v = 0; v < kShape.vocab; ++v) sum += std::exp(row[v] - top);
    loss += -(row[targets[t]] - top - std::log(sum));
  }
  CHECK(loss / T == Approx(train_loss).epsilon(1e-5));
}

TEST_CASE("generate: sampling is reproducible and top-k restricts the choice", "[model][generate]") {
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  TokenSampler a(SamplingOptions{1.0, 0, 42}), b(SamplingOptions{1.0, 0, 42});
  for (int i = 0; i < 50; ++i) CHECK(a.next(logits) == b.next(logits));
  TokenSampler top2(SamplingOptions{1.0, 2, 7});
  for (int i = 0; i < 200; ++i) {
    const std::int32_t t = top2.next(logits);
    CHECK((t == 1 || t == 3));
  }
  TokenSampler greedy(SamplingOptions{0.0, 0, 7});
  CHECK(greedy.next(logits) == 1);
  CHECK_THROWS_AS(Generator(kShape, *std::make_unique<CpuBackend>(1), UnitParams(4, nullptr), kShape.max_seq_len + 1),
                  InputError);
}
