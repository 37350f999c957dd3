// Text generation from a GPT-2 on one process, with a key/value cache: each new position runs the block
// on one row only (its q, k, v from the existing GEMM ops), stores its k and v in the cache and attends
// over the cache with Backend::attention_decode. The kernels stay in the backends; this file only
// orchestrates them (llm.c style).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/model/gpt.hpp"

namespace mics::model {

// One pointer per unit (ParamLayout order) to its whole flat buffer in the backend's memory.
using UnitParams = std::vector<const float*>;

class Generator {
 public:
  // Room for max_len positions (<= the model's max_seq_len, else InputError).
  Generator(const GptShape& shape, backends::Backend& backend, UnitParams params, int max_len);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Feeds `token` at the next position; returns the logits (V floats, host) of the token after it.
  // InputError when the token is outside the vocabulary or the cache is full.
  std::span<const float> feed(std::int32_t token);
  int position() const { return pos_; }
  int max_len() const { return max_len_; }

 private:
  struct State;
  const GptShape shape_;
  ParamLayout layout_;
  backends::Backend& backend_;
  UnitParams params_;
  int max_len_;
  int pos_ = 0;
  std::unique_ptr<State> state_;
};

// The plain forward pass with the training ops (attention_forward over the whole sequence, no cache):
// logits (n, V) of every position of `tokens`, row-major, on the host.
std::vector<float> forward_logits(const GptShape& shape, backends::Backend& backend, const UnitParams& params,
                                  std::span<const std::int32_t> tokens);

struct SamplingOptions {
  double temperature = 1.0;  // <= 0: greedy (argmax, the lowest index on ties)
  int top_k = 0;             // > 0: only the k most likely tokens
  std::uint64_t seed = 1337;
};

// The index of the largest value (the lowest one on ties).
std::int32_t argmax(std::span<const float> logits);

// Draws tokens; the same seed gives the same tokens.
class TokenSampler {
 public:
  explicit TokenSampler(const SamplingOptions& options) : options_(options), counter_(0) {}
  std::int32_t next(std::span<const float> logits);

 private:
  SamplingOptions options_;
  std::uint64_t counter_;
};

// Feeds the prompt (at least one token), then generates `count` tokens (stopping early when the cache is
// full); on_token(token) is called for each generated token as it comes. Returns the generated tokens.
std::vector<std::int32_t> generate(Generator& generator, std::span<const std::int32_t> prompt, int count,
                                   TokenSampler& sampler, const std::function<void(std::int32_t)>& on_token = {});

}  // namespace mics::model
