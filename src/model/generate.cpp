// Generation with a key/value cache, and the plain full forward it is checked against. Both run the
// GPT-2 block of gpt.cpp with the backend's ops; the cached path computes one row per position.
#include "mics/model/generate.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>

#include "mics/util/error.hpp"
#include "mics/util/splitmix.hpp"

namespace mics::model {

using backends::Buffer;

namespace {

// Offsets of one block's tensors inside its unit (the same for every block), and of wpe in unit 0.
struct Offsets {
  std::size_t wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
  explicit Offsets(const ParamLayout& layout) {
    auto at = [&](const char* suffix) { return layout.tensor(std::string("h.0.") + suffix).offset; };
    wpe = layout.tensor("wpe.weight").offset;
    ln1w = at("ln_1.weight"), ln1b = at("ln_1.bias"), qkvw = at("attn.c_attn.weight"), qkvb = at("attn.c_attn.bias");
    attprojw = at("attn.c_proj.weight"), attprojb = at("attn.c_proj.bias"), ln2w = at("ln_2.weight");
    ln2b = at("ln_2.bias"), fcw = at("mlp.c_fc.weight"), fcb = at("mlp.c_fc.bias");
    fcprojw = at("mlp.c_proj.weight"), fcprojb = at("mlp.c_proj.bias");
  }
};

// Scratch for N rows of the block, and the block itself: x (N,C) is the residual stream, updated in place.
struct Rows {
  Buffer<float> ln, mean, rstd, qkv, atty, proj, fch, fch_gelu, att, x2;
  Rows(backends::Backend& b, std::size_t N, std::size_t C, std::size_t NH, std::size_t T_att)
      : ln(b.alloc<float>(N * C)),
        mean(b.alloc<float>(N)),
        rstd(b.alloc<float>(N)),
        qkv(b.alloc<float>(N * 3 * C)),
        atty(b.alloc<float>(N * C)),
        proj(b.alloc<float>(N * C)),
        fch(b.alloc<float>(N * 4 * C)),
        fch_gelu(b.alloc<float>(N * 4 * C)),
        att(b.alloc<float>(std::max<std::size_t>(1, NH * T_att * T_att))),
        x2(b.alloc<float>(N * C)) {}
};

// The MLP half of a block and the attention projection, shared by both paths: x (N,C) in, x out.
void block_tail(backends::Backend& be, Rows& r, float* x, const float* p, const Offsets& o, int N, int C) {
  const std::size_t NC = static_cast<std::size_t>(N) * C;
  be.matmul_forward(r.proj.data(), r.atty.data(), p + o.attprojw, p + o.attprojb, N, C, C);
  be.residual_forward(r.x2.data(), r.proj.data(), x, NC);
  be.layernorm_forward(r.ln.data(), r.mean.data(), r.rstd.data(), r.x2.data(), p + o.ln2w, p + o.ln2b, N, C);
  be.matmul_forward(r.fch.data(), r.ln.data(), p + o.fcw, p + o.fcb, N, C, 4 * C);
  be.gelu_forward(r.fch_gelu.data(), r.fch.data(), 4 * NC);
  be.matmul_forward(r.proj.data(), r.fch_gelu.data(), p + o.fcprojw, p + o.fcprojb, N, 4 * C, C);
  be.residual_forward(x, r.proj.data(), r.x2.data(), NC);
}

void check_params(const ParamLayout& layout, const UnitParams& params) {
  if (params.size() != layout.units().size())
    throw InternalError("generation: " + std::to_string(params.size()) + " unit buffers for a model of " +
                        std::to_string(layout.units().size()) + " units");
}

}  // namespace

struct Generator::State {
  Offsets offsets;
  Rows rows;
  Buffer<std::int32_t> token;
  Buffer<float> x, lnf, logits;
  std::vector<Buffer<float>> keys, values;  // per layer (max_len, C)
  std::vector<float> host_logits;
  State(const ParamLayout& layout, backends::Backend& be, int max_len)
      : offsets(layout),
        rows(be, 1, static_cast<std::size_t>(layout.shape().channels), 0, 0),
        token(be.alloc<std::int32_t>(1)),
        x(be.alloc<float>(static_cast<std::size_t>(layout.shape().channels))),
        lnf(be.alloc<float>(static_cast<std::size_t>(layout.shape().channels))),
        logits(be.alloc<float>(static_cast<std::size_t>(layout.shape().padded_vocab))),
        host_logits(static_cast<std::size_t>(layout.shape().vocab)) {
    const std::size_t cache = static_cast<std::size_t>(max_len) * layout.shape().channels;
    for (int l = 0; l < layout.shape().layers; ++l) {
      keys.push_back(be.alloc<float>(cache));
      values.push_back(be.alloc<float>(cache));
    }
  }
};

Generator::Generator(const GptShape& shape, backends::Backend& backend, UnitParams params, int max_len)
    : shape_(shape), layout_(shape), backend_(backend), params_(std::move(params)), max_len_(max_len) {
  check_params(layout_, params_);
  if (max_len < 1 || max_len > shape.max_seq_len)
    throw InputError("generation: " + std::to_string(max_len) + " positions do not fit the model's max_seq_len " +
                     std::to_string(shape.max_seq_len));
  state_ = std::make_unique<State>(layout_, backend_, max_len);
}

Generator::~Generator() = default;

std::span<const float> Generator::feed(std::int32_t token) {
  if (token < 0 || token >= shape_.vocab)
    throw InputError("generation: token " + std::to_string(token) + " is outside the vocabulary [0, " +
                     std::to_string(shape_.vocab) + ")");
  if (pos_ >= max_len_)
    throw InputError("generation: the sequence is full (" + std::to_string(max_len_) + " positions)");
  State& s = *state_;
  const Offsets& o = s.offsets;
  const int C = shape_.channels;
  backends::Backend& be = backend_;
  be.copy_from_host(s.token.data(), &token, sizeof(token));
  const float* embedding = params_[0];
  // wpe row pos: the encoder adds wpe[t] for t = 0, so hand it the row of this position.
  be.encoder_forward(s.x.data(), s.token.data(), embedding, embedding + o.wpe + static_cast<std::size_t>(pos_) * C,
                     1, 1, C);
  Rows& r = s.rows;
  for (int l = 0; l < shape_.layers; ++l) {
    const float* p = params_[static_cast<std::size_t>(l) + 1];
    be.layernorm_forward(r.ln.data(), r.mean.data(), r.rstd.data(), s.x.data(), p + o.ln1w, p + o.ln1b, 1, C);
    be.matmul_forward(r.qkv.data(), r.ln.data(), p + o.qkvw, p + o.qkvb, 1, C, 3 * C);
    float* k = s.keys[static_cast<std::size_t>(l)].data();
    float* v = s.values[static_cast<std::size_t>(l)].data();
    be.copy(k + static_cast<std::size_t>(pos_) * C, r.qkv.data() + C, static_cast<std::size_t>(C));
    be.copy(v + static_cast<std::size_t>(pos_) * C, r.qkv.data() + 2 * C, static_cast<std::size_t>(C));
    be.attention_decode(r.atty.data(), r.qkv.data(), k, v, pos_ + 1, C, shape_.heads, C);
    block_tail(be, r, s.x.data(), p, o, 1, C);
  }
  const float* lnf = params_[static_cast<std::size_t>(shape_.layers) + 1];
  be.layernorm_forward(s.lnf.data(), r.mean.data(), r.rstd.data(), s.x.data(), lnf, lnf + C, 1, C);
  be.matmul_forward(s.logits.data(), s.lnf.data(), embedding, nullptr, 1, C, shape_.padded_vocab);
  be.copy_to_host(s.host_logits.data(), s.logits.data(), s.host_logits.size() * sizeof(float));
  ++pos_;
  return s.host_logits;
}

std::vector<float> forward_logits(const GptShape& shape, backends::Backend& be, const UnitParams& params,
                                  std::span<const std::int32_t> tokens) {
  const ParamLayout layout(shape);
  check_params(layout, params);
  const int T = static_cast<int>(tokens.size());
  if (T < 1 || T > shape.max_seq_len)
    throw InputError("forward: " + std::to_string(T) + " tokens (the model takes 1.." +
                     std::to_string(shape.max_seq_len) + ")");
  for (std::int32_t t : tokens)
    if (t < 0 || t >= shape.vocab) throw InputError("forward: token " + std::to_string(t) + " outside the vocabulary");
  const Offsets o(layout);
  const int C = shape.channels;
  const std::size_t N = static_cast<std::size_t>(T);
  Rows r(be, N, static_cast<std::size_t>(C), static_cast<std::size_t>(shape.heads), N);
  Buffer<std::int32_t> ids = be.alloc<std::int32_t>(N);
  be.copy_from_host(ids.data(), tokens.data(), N * sizeof(std::int32_t));
  Buffer<float> x = be.alloc<float>(N * C), lnf = be.alloc<float>(N * C);
  Buffer<float> logits = be.alloc<float>(N * static_cast<std::size_t>(shape.padded_vocab));
  be.encoder_forward(x.data(), ids.data(), params[0], params[0] + o.wpe, 1, T, C);
  for (int l = 0; l < shape.layers; ++l) {
    const float* p = params[static_cast<std::size_t>(l) + 1];
    be.layernorm_forward(r.ln.data(), r.mean.data(), r.rstd.data(), x.data(), p + o.ln1w, p + o.ln1b, T, C);
    be.matmul_forward(r.qkv.data(), r.ln.data(), p + o.qkvw, p + o.qkvb, T, C, 3 * C);
    be.attention_forward(r.atty.data(), r.att.data(), r.qkv.data(), 1, T, C, shape.heads);
    block_tail(be, r, x.data(), p, o, T, C);
  }
  const float* lnf_params = params[static_cast<std::size_t>(shape.layers) + 1];
  be.layernorm_forward(lnf.data(), r.mean.data(), r.rstd.data(), x.data(), lnf_params, lnf_params + C, T, C);
  be.matmul_forward(logits.data(), lnf.data(), params[0], nullptr, T, C, shape.padded_vocab);
  std::vector<float> padded(N * static_cast<std::size_t>(shape.padded_vocab));
  be.copy_to_host(padded.data(), logits.data(), padded.size() * sizeof(float));
  std::vector<float> out(N * static_cast<std::size_t>(shape.vocab));
  for (std::size_t t = 0; t < N; ++t)
    std::copy_n(padded.begin() + static_cast<std::ptrdiff_t>(t * shape.padded_vocab), shape.vocab,
                out.begin() + static_cast<std::ptrdiff_t>(t * shape.vocab));
  return out;
}

std::int32_t argmax(std::span<const float> logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

std::int32_t TokenSampler::next(std::span<const float> logits) {
  if (options_.temperature <= 0) return argmax(logits);
  const std::size_t V = logits.size();
  std::vector<std::int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::size_t keep = V;
  if (options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < V) {
    keep = static_cast<std::size_t>(options_.top_k);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                      [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  }
  double top = -INFINITY;
  for (std::size_t i = 0; i < keep; ++i) top = std::max(top, static_cast<double>(logits[order[i]]));
  std::vector<double> weights(keep);
  double total = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    weights[i] = std::exp((logits[order[i]] - top) / options_.temperature);
    total += weights[i];
  }
  const std::uint64_t h = splitmix64(splitmix64(options_.seed) ^ counter_++);
  double u = static_cast<double>(h >> 11) * 0x1.0p-53 * total;
  for (std::size_t i = 0; i < keep; ++i) {
    if (u < weights[i]) return order[i];
    u -= weights[i];
  }
  return order[keep - 1];
}

std::vector<std::int32_t> generate(Generator& generator, std::span<const std::int32_t> prompt, int count,
                                   TokenSampler& sampler, const std::function<void(std::int32_t)>& on_token) {
  if (prompt.empty()) throw InputError("generation: the prompt is empty (give at least one token)");
  if (static_cast<int>(prompt.size()) > generator.max_len())
    throw InputError("generation: the prompt has " + std::to_string(prompt.size()) + " tokens, the model takes " +
                     std::to_string(generator.max_len()));
  std::span<const float> logits;
  for (std::int32_t t : prompt) logits = generator.feed(t);
  std::vector<std::int32_t> out;
  for (int i = 0; i < count; ++i) {
    const std::int32_t next = sampler.next(logits);
    out.push_back(next);
    if (on_token) on_token(next);
    if (generator.position() >= generator.max_len() || i + 1 == count) break;
    logits = generator.feed(next);
  }
  return out;
}

}  // namespace mics::model
