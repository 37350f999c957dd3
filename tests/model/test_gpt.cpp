// The whole GPT-2 model on the CPU backend: loss and every tensor's gradient against a double-precision
// reference model built from the naive reference ops, stage order, tied-embedding gradient, padding,
// accumulation and init.
#include "catch.hpp"

#include <algorithm>
#include <cmath>

#include "../backends/reference_ops.hpp"
#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

using namespace mics;
using namespace mics::model;
using namespace mics::testing;
using backends::Buffer;
using backends::cpu::CpuBackend;

namespace {

const GptShape kTiny{2, 2, 16, 50, 128, 8};  // L, NH, C, V, Vp, maxT
constexpr int kB = 2, kT = 8;

Vec slice(const Vec& v, std::size_t offset, std::size_t n) {
  return Vec(v.begin() + static_cast<std::ptrdiff_t>(offset), v.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

// Mean cross-entropy of the whole model in double, from per-unit flat parameter vectors.
double reference_loss(const ParamLayout& layout, const std::vector<Vec>& units, const std::vector<std::int32_t>& inputs,
                      const std::vector<std::int32_t>& targets, int B, int T) {
  const GptShape& s = layout.shape();
  const int C = s.channels, N = B * T;
  auto get = [&](const std::string& name) {
    const TensorInfo& t = layout.tensor(name);
    return slice(units[static_cast<std::size_t>(t.unit)], t.offset, t.numel);
  };
  const Vec wte = get("wte.weight");
  Vec x = ref::encoder(inputs, wte, get("wpe.weight"), B, T, C);
  for (int l = 0; l < s.layers; l++) {
    const std::string h = "h." + std::to_string(l) + ".";
    const Vec ln1 = ref::layernorm(x, get(h + "ln_1.weight"), get(h + "ln_1.bias"), N, C);
    const Vec qkvb = get(h + "attn.c_attn.bias");
    const Vec qkv = ref::matmul(ln1, get(h + "attn.c_attn.weight"), &qkvb, N, C, 3 * C);
    const Vec atty = ref::attention(qkv, B, T, C, s.heads);
    const Vec projb = get(h + "attn.c_proj.bias");
    x = ref::add(x, ref::matmul(atty, get(h + "attn.c_proj.weight"), &projb, N, C, C));
    const Vec ln2 = ref::layernorm(x, get(h + "ln_2.weight"), get(h + "ln_2.bias"), N, C);
    const Vec fcb = get(h + "mlp.c_fc.bias");
    const Vec fch = ref::gelu(ref::matmul(ln2, get(h + "mlp.c_fc.weight"), &fcb, N, C, 4 * C));
    const Vec fcprojb = get(h + "mlp.c_proj.bias");
    x = ref::add(x, ref::matmul(fch, get(h + "mlp.c_proj.weight"), &fcprojb, N, 4 * C, C));
  }
  const Vec lnf = ref::layernorm(x, get("ln_f.weight"), get("ln_f.bias"), N, C);
  const Vec logits = ref::matmul(lnf, wte, nullptr, N, C, s.padded_vocab);
  const Vec losses = ref::crossentropy(logits, targets, N, s.vocab, s.padded_vocab);
  double total = 0;
  for (double l : losses) total += l;
  return total / N;
}

// Per-unit parameters and gradients in backend memory, plus host copies of the parameters.
struct Model {
  std::vector<std::vector<float>> host;
  std::vector<Buffer<float>> params, grads;
  std::vector<const float*> param_ptrs;
  std::vector<float*> grad_ptrs;
};

// Random parameters with O(1) effects (std 0.3 weights, LN weights near 1, nonzero biases) so every
// gradient is well away from zero; wte padding rows get garbage to prove they are never read.
Model random_model(CpuBackend& be, const ParamLayout& layout, unsigned seed) {
  std::mt19937 rng(seed);
  Model m;
  for (const UnitInfo& unit : layout.units()) {
    std::vector<float> host(unit.numel);
    for (int index : unit.tensors) {
      const TensorInfo& t = layout.tensors()[static_cast<std::size_t>(index)];
      const bool ln_weight = t.name.find("ln_") != std::string::npos && t.name.ends_with("weight");
      auto values = random_floats(t.numel, rng, ln_weight ? 1.0 : 0.0, ln_weight ? 0.1 : 0.3);
      std::copy(values.begin(), values.end(), host.begin() + static_cast<std::ptrdiff_t>(t.offset));
    }
    m.params.push_back(upload(be, host));
    m.grads.push_back(upload(be, std::vector<float>(unit.numel, 0.0f)));
    m.host.push_back(std::move(host));
  }
  for (auto& p : m.params) m.param_ptrs.push_back(p.data());
  for (auto& g : m.grads) m.grad_ptrs.push_back(g.data());
  return m;
}

std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<std::int32_t> dist(0, vocab - 1);
  std::vector<std::int32_t> tokens(n);
  for (auto& t : tokens) t = dist(rng);
  return tokens;
}

}  // namespace

TEST_CASE("stages: forward and backward orders cover every unit", "[model][gpt]") {
  CpuBackend be(1);
  Gpt gpt(kTiny, be, kB, kT);
  const auto fwd = model::forward_stages(gpt.layout().shape().layers);
  REQUIRE(fwd.size() == static_cast<std::size_t>(kTiny.layers) + 3);
  CHECK((fwd.front().kind == Stage::Kind::Embed && fwd.front().unit == 0));
  CHECK((fwd[1].kind == Stage::Kind::Block && fwd[1].unit == 1 && fwd[1].layer == 0));
  CHECK((fwd[2].kind == Stage::Kind::Block && fwd[2].unit == 2 && fwd[2].layer == 1));
  CHECK((fwd[3].kind == Stage::Kind::FinalNorm && fwd[3].unit == 3));
  CHECK((fwd[4].kind == Stage::Kind::Head && fwd[4].unit == 0));
  const auto bwd = model::backward_stages(gpt.layout().shape().layers);
  REQUIRE(bwd.size() == fwd.size());
  CHECK((bwd[0].kind == Stage::Kind::Head && bwd[0].unit == 0));
  CHECK((bwd[1].kind == Stage::Kind::FinalNorm && bwd[1].unit == 3));
  CHECK((bwd[2].kind == Stage::Kind::Block && bwd[2].unit == 2 && bwd[2].layer == 1));
  CHECK((bwd[3].kind == Stage::Kind::Block && bwd[3].unit == 1 && bwd[3].layer == 0));
  CHECK((bwd[4].kind == Stage::Kind::Embed && bwd[4].unit == 0));
  CHECK(gpt.activation_bytes() > 0);
}

TEST_CASE("bad sequence lengths, batches and tokens are named errors", "[model][gpt]") {
  CpuBackend be(1);
  CHECK_THROWS_WITH(Gpt(kTiny, be, kB, 9), Catch::Contains("seq_len = 9"));
  CHECK_THROWS_WITH(Gpt(kTiny, be, 0, kT), Catch::Contains("micro_batch = 0"));
  Gpt gpt(kTiny, be, 1, 2);
  const std::vector<std::int32_t> good = {1, 2}, bad = {1, 50};
  CHECK_THROWS_WITH(gpt.set_batch(good.data(), bad.data()), Catch::Contains("50"));
  CHECK_THROWS_WITH(gpt.set_batch(bad.data(), good.data()), Catch::Contains("50"));
  CHECK_THROWS_AS(gpt.loss(), Error);
}

TEST_CASE("whole-model loss and gradients of every tensor match the double reference", "[model][gpt]") {
  CpuBackend be(1);
  Gpt gpt(kTiny, be, kB, kT);
  const ParamLayout& layout = gpt.layout();
  Model m = random_model(be, layout, 11);
  std::mt19937 rng(12);
  const auto inputs = random_tokens(kB * kT, kTiny.vocab, rng), targets = random_tokens(kB * kT, kTiny.vocab, rng);
  gpt.set_batch(inputs.data(), targets.data());
  const float grad_scale = 2.0f;
  const float loss = forward_backward(gpt, m.param_ptrs, m.grad_ptrs, grad_scale);

  std::vector<Vec> units;
  for (const auto& h : m.host) units.push_back(to_double(h));
  const double ref = reference_loss(layout, units, inputs, targets, kB, kT);
  // the loss is ~4 and passes through ~10 fp32 stages of O(C) sums: relative error ~1e-6
  CHECK(loss == Approx(ref).epsilon(1e-5));

  // A random subset of coordinates in every tensor (all of the small ones), compared with central
  // differences of the double reference (exact to ~1e-10). Gradients here are O(1e-3..1e-1) and the fp32
  // backward, a chain of O(C)-term sums each rounding at 6e-8 relative, is accurate to ~1e-6 of the
  // largest gradient; 2e-5 absolute + 1e-3 relative leaves headroom while a wrong term is off by O(|g|).
  std::vector<std::vector<float>> grads;
  for (std::size_t u = 0; u < m.grads.size(); u++) grads.push_back(download(be, m.grads[u].data(), m.grads[u].size()));
  std::mt19937 pick(13);
  auto f = [&](std::size_t unit) {
    return [&, unit](const Vec& x) {
      std::vector<Vec> perturbed = units;
      perturbed[unit] = x;
      return grad_scale * reference_loss(layout, perturbed, inputs, targets, kB, kT);
    };
  };
  int checked = 0;
  for (const TensorInfo& t : layout.tensors()) {
    std::vector<std::size_t> coords;
    if (t.numel <= 16) {
      for (std::size_t i = 0; i < t.numel; i++) coords.push_back(i);
    } else {
      std::uniform_int_distribution<std::size_t> any(0, t.numel - 1);
      for (int k = 0; k < 12; k++) coords.push_back(any(pick));
    }
    if (t.name == "wte.weight") {
      for (int tok : {inputs[0], targets[0], inputs[5]}) coords.push_back(static_cast<std::size_t>(tok) * kTiny.channels + 3);
    }
    const auto u = static_cast<std::size_t>(t.unit);
    const auto fu = f(u);
    for (std::size_t i : coords) {
      const double numeric = central_difference(fu, units[u], t.offset + i, 1e-5);
      const double analytic = grads[u][t.offset + i];
      INFO(t.name << "[" << i << "]: analytic " << analytic << ", numeric " << numeric);
      REQUIRE(std::abs(analytic - numeric) <= 2e-5 + 1e-3 * std::abs(numeric));
      checked++;
    }
  }
  CHECK(checked > 300);
}

TEST_CASE("tied wte: the head and the embedding both contribute; padding rows get nothing", "[model][gpt]") {
  CpuBackend be(1);
  Gpt gpt(kTiny, be, kB, kT);
  const ParamLayout& layout = gpt.layout();
  Model m = random_model(be, layout, 21);
  std::mt19937 rng(22);
  // inputs use tokens 0..9 only: rows 10..V-1 of wte are touched by the head alone
  auto inputs = random_tokens(kB * kT, 10, rng);
  const auto targets = random_tokens(kB * kT, kTiny.vocab, rng);
  gpt.set_batch(inputs.data(), targets.data());
  for (const Stage& st : model::forward_stages(gpt.layout().shape().layers)) gpt.forward(st, m.param_ptrs[static_cast<std::size_t>(st.unit)]);
  const auto bwd = model::backward_stages(gpt.layout().shape().layers);
  const int C = kTiny.channels;
  gpt.backward(bwd[0], m.param_ptrs[0], m.grad_ptrs[0], 1.0f);  // Head
  const auto head_only = download(be, m.grad_ptrs[0], layout.units()[0].numel);
  for (std::size_t k = 1; k < bwd.size(); k++) {
    const auto u = static_cast<std::size_t>(bwd[k].unit);
    gpt.backward(bwd[k], m.param_ptrs[u], m.grad_ptrs[u], 1.0f);
  }
  const auto full = download(be, m.grad_ptrs[0], layout.units()[0].numel);
  for (int row = 0; row < kTiny.padded_vocab; row++) {
    double head_norm = 0, embed_norm = 0;
    for (int c = 0; c < C; c++) {
      head_norm += std::abs(head_only[static_cast<std::size_t>(row * C + c)]);
      embed_norm += std::abs(full[static_cast<std::size_t>(row * C + c)] - head_only[static_cast<std::size_t>(row * C + c)]);
    }
    INFO("row " << row);
    if (row < kTiny.vocab) {
      CHECK(head_norm > 0);  // every real token's logit is in the softmax
    } else {
      CHECK(head_norm == 0);  // padding logits are ignored, so their rows get exactly nothing
      CHECK(embed_norm == 0);
    }
    const bool is_input = std::find(inputs.begin(), inputs.end(), row) != inputs.end();
    CHECK((embed_norm > 0) == is_input);
  }
}

TEST_CASE("padding rows of wte do not change the loss", "[model][gpt]") {
  CpuBackend be(1);
  Gpt gpt(kTiny, be, kB, kT);
  Model m = random_model(be, gpt.layout(), 31);
  std::mt19937 rng(32);
  const auto inputs = random_tokens(kB * kT, kTiny.vocab, rng), targets = random_tokens(kB * kT, kTiny.vocab, rng);
  gpt.set_batch(inputs.data(), targets.data());
  const float before = forward_backward(gpt, m.param_ptrs, {}, 1.0f);
  // padding rows huge: if their logits took part they would dominate every softmax
  be.fill(m.params[0].data() + static_cast<std::size_t>(kTiny.vocab) * kTiny.channels,
          static_cast<std::size_t>(kTiny.padded_vocab - kTiny.vocab) * kTiny.channels, 100.0f);
  const float after = forward_backward(gpt, m.param_ptrs, {}, 1.0f);
  CHECK(after == before);
}

TEST_CASE("backward accumulates and scales with grad_scale", "[model][gpt]") {
  CpuBackend be(1);
  Gpt gpt(kTiny, be, kB, kT);
  Model once = random_model(be, gpt.layout(), 41), twice = random_model(be, gpt.layout(), 41);
  std::mt19937 rng(42);
  const auto inputs = random_tokens(kB * kT, kTiny.vocab, rng), targets = random_tokens(kB * kT, kTiny.vocab, rng);
  gpt.set_batch(inputs.data(), targets.data());
  const float l1 = forward_backward(gpt, once.param_ptrs, once.grad_ptrs, 3.0f);
  forward_backward(gpt, twice.param_ptrs, twice.grad_ptrs, 1.0f);
  const float l2 = forward_backward(gpt, twice.param_ptrs, twice.grad_ptrs, 2.0f);
  CHECK(l1 == l2);  // same parameters, same batch: bit-identical forward
  CHECK(gpt.loss() == l1);
  for (std::size_t u = 0; u < once.grads.size(); u++) {
    const auto a = download(be, once.grads[u].data(), once.grads[u].size());
    const auto b = download(be, twice.grads[u].data(), twice.grads[u].size());
    // 3g versus g + 2g: the same sums with differently rounded inputs, so they differ by fp32 rounding of the
    // largest terms (~1e-6 of the unit's largest gradient), not of each (possibly cancelled) coordinate.
    // Without accumulation b would be 2g, off by a third of every coordinate.
    float largest = 0;
    for (float x : a) largest = std::max(largest, std::abs(x));
    REQUIRE(largest > 0);
    for (std::size_t i = 0; i < a.size(); i++) {
      INFO("unit " << u << " [" << i << "]");
      REQUIRE(std::abs(b[i] - a[i]) <= 1e-4f * largest);
    }
  }
}

TEST_CASE("init_unit: GPT-2 init, deterministic per (seed, unit)", "[model][gpt]") {
  CpuBackend be(1);
  const GptShape s{4, 2, 64, 300, 384, 32};
  Gpt gpt(s, be, 1, 4);
  const ParamLayout& layout = gpt.layout();
  std::vector<Buffer<float>> a, b;
  for (const UnitInfo& u : layout.units()) a.push_back(be.alloc<float>(u.numel));
  for (const UnitInfo& u : layout.units()) b.push_back(be.alloc<float>(u.numel));
  // a: units in order with seed 7; b: reverse order, unit 2 also initialised with another seed first
  for (std::size_t u = 0; u < a.size(); u++) gpt.init_unit(static_cast<int>(u), a[u].data(), 7);
  gpt.init_unit(2, b[2].data(), 8);
  for (std::size_t u = b.size(); u-- > 0;) gpt.init_unit(static_cast<int>(u), b[u].data(), 7);
  for (std::size_t u = 0; u < a.size(); u++) {
    REQUIRE(download(be, a[u].data(), a[u].size()) == download(be, b[u].data(), b[u].size()));
  }
  auto c = be.alloc<float>(layout.units()[2].numel);
  gpt.init_unit(2, c.data(), 8);
  CHECK(download(be, c.data(), c.size()) != download(be, a[2].data(), a[2].size()));
  CHECK_THROWS_AS(gpt.init_unit(6, c.data(), 7), Error);

  // A range (a rank's shard) holds exactly the elements of the full init: inside one tensor, across
  // tensor boundaries, and with an end past the unit (padding of the last shard).
  const std::vector<float> full = download(be, a[1].data(), a[1].size());
  const std::size_t n = full.size();
  for (const auto& [begin, end] : std::vector<std::pair<std::size_t, std::size_t>>{
           {0, 10}, {100, 5000}, {n / 3, 2 * n / 3}, {n - 7, n + 50}}) {
    auto part = be.alloc<float>(std::min(end, n) - begin);
    gpt.init_unit_range(1, part.data(), 7, begin, end);
    const std::vector<float> want(full.begin() + static_cast<std::ptrdiff_t>(begin),
                                  full.begin() + static_cast<std::ptrdiff_t>(std::min(end, n)));
    CHECK(download(be, part.data(), part.size()) == want);
  }

  auto stats = [&](const std::string& name) {
    const TensorInfo& t = layout.tensor(name);
    const auto host = download(be, a[static_cast<std::size_t>(t.unit)].data() + t.offset, t.numel);
    return host;
  };
  auto sd = [](const std::vector<float>& v) {
    double s2 = 0, s1 = 0;
    for (float x : v) {
      s1 += x;
      s2 += static_cast<double>(x) * x;
    }
    const double n = static_cast<double>(v.size());
    return std::sqrt(s2 / n - (s1 / n) * (s1 / n));
  };
  // sample std of n normals is within a few sigma/sqrt(2n) of sigma: n >= 8192 gives ~1% at 1 sigma, 5% is safe
  const auto wte = stats("wte.weight");
  const std::vector<float> real(wte.begin(), wte.begin() + 300 * 64), pad(wte.begin() + 300 * 64, wte.end());
  CHECK(sd(real) == Approx(0.02).epsilon(0.05));
  CHECK(std::all_of(pad.begin(), pad.end(), [](float x) { return x == 0.0f; }));
  CHECK(sd(stats("h.1.mlp.c_fc.weight")) == Approx(0.02).epsilon(0.05));
  CHECK(sd(stats("h.1.mlp.c_proj.weight")) == Approx(0.02 / std::sqrt(8.0)).epsilon(0.05));
  CHECK(sd(stats("h.3.attn.c_proj.weight")) == Approx(0.02 / std::sqrt(8.0)).epsilon(0.05));
  for (const char* name : {"h.0.ln_1.weight", "h.2.ln_2.weight", "ln_f.weight"}) {
    const auto v = stats(name);
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x == 1.0f; }));
  }
  for (const char* name : {"h.0.ln_1.bias", "h.1.attn.c_attn.bias", "h.3.mlp.c_proj.bias", "ln_f.bias"}) {
    const auto v = stats(name);
    CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; }));
  }
}

TEST_CASE("recompute = blocks: the same loss and gradients to the bit, with fewer activation bytes",
          "[model][gpt][recompute]") {
  CpuBackend be(1);
  const GptShape s{3, 2, 16, 50, 128, 8};  // three blocks: two are recomputed, the last is not
  Gpt keep(s, be, kB, kT);
  Gpt recompute(s, be, kB, kT, config::Recompute::blocks);
  CHECK(recompute.recompute_mode() == config::Recompute::blocks);
  Model a = random_model(be, keep.layout(), 51), b = random_model(be, keep.layout(), 51);
  std::mt19937 rng(52);
  for (int batch = 0; batch < 2; ++batch) {  // the second batch accumulates on the first one's gradients
    const auto inputs = random_tokens(kB * kT, s.vocab, rng), targets = random_tokens(kB * kT, s.vocab, rng);
    keep.set_batch(inputs.data(), targets.data());
    recompute.set_batch(inputs.data(), targets.data());
    const float la = forward_backward(keep, a.param_ptrs, a.grad_ptrs, 0.5f);
    const float lb = forward_backward(recompute, b.param_ptrs, b.grad_ptrs, 0.5f);
    CHECK(la == lb);
    for (std::size_t u = 0; u < a.grads.size(); u++) {
      INFO("batch " << batch << " unit " << u);
      CHECK(download(be, a.grads[u].data(), a.grads[u].size()) == download(be, b.grads[u].data(), b.grads[u].size()));
    }
  }

  // The backward of a recomputed block without its recompute is a bug, caught.
  const auto inputs = random_tokens(kB * kT, s.vocab, rng), targets = random_tokens(kB * kT, s.vocab, rng);
  recompute.set_batch(inputs.data(), targets.data());
  for (const Stage& st : forward_stages(s.layers)) recompute.forward(st, b.param_ptrs[static_cast<std::size_t>(st.unit)]);
  const auto bwd = backward_stages(s.layers);
  for (std::size_t k = 0; k < 3; ++k)  // Head, FinalNorm, the last block (its activations are still there)
    recompute.backward(bwd[k], b.param_ptrs[static_cast<std::size_t>(bwd[k].unit)],
                       b.grad_ptrs[static_cast<std::size_t>(bwd[k].unit)], 1.0f);
  CHECK(needs_recompute(bwd[3], s.layers, config::Recompute::blocks));
  CHECK_FALSE(needs_recompute(bwd[2], s.layers, config::Recompute::blocks));
  CHECK_FALSE(needs_recompute(bwd[3], s.layers, config::Recompute::none));
  CHECK_THROWS_AS(recompute.backward(bwd[3], b.param_ptrs[static_cast<std::size_t>(bwd[3].unit)],
                                     b.grad_ptrs[static_cast<std::size_t>(bwd[3].unit)], 1.0f),
                  InternalError);
  CHECK_THROWS_AS(keep.recompute(bwd[3], a.param_ptrs[2]), InternalError);
}

TEST_CASE("activation bytes: every block's, or each block's input plus one block", "[model][gpt][recompute]") {
  CpuBackend be(1);
  for (int layers : {1, 2, 6}) {
    const GptShape s{layers, 2, 16, 50, 128, 8};
    const std::size_t N = kB * kT, C = 16, L = static_cast<std::size_t>(layers);
    // One block without its output (ln1 NC+2N, qkv 3NC, atty NC, att B*NH*T*T, residual2 NC, ln2 NC+2N,
    // fch and its gelu 8NC); per layer its output residual3 NC; the rest: encoded NC, lnf NC+2N, logits
    // N*Vp, losses and inv_sum 2N, backward scratch 6NC, token ids 2N int32.
    const std::size_t block = 15 * N * C + 4 * N + kB * 2 * kT * kT;
    const std::size_t rest = (N * C + L * N * C + N * C + 2 * N + N * 128 + 2 * N + 6 * N * C) * 4 + 2 * N * 4;
    INFO("layers " << layers);
    CHECK(Gpt::activation_bytes(s, kB, kT, config::Recompute::none) == rest + L * block * 4);
    CHECK(Gpt::activation_bytes(s, kB, kT, config::Recompute::blocks) == rest + block * 4);
    CHECK(Gpt(s, be, kB, kT).activation_bytes() == rest + L * block * 4);
    CHECK(Gpt(s, be, kB, kT, config::Recompute::blocks).activation_bytes() == rest + block * 4);
  }
  // gpt2-124m at B = 4, T = 1024: from 12 blocks' worth to one block plus the inputs.
  const GptShape g = preset_shape("gpt2-124m");
  const double none = static_cast<double>(Gpt::activation_bytes(g, 4, 1024, config::Recompute::none));
  const double blocks = static_cast<double>(Gpt::activation_bytes(g, 4, 1024, config::Recompute::blocks));
  CHECK(blocks < 0.3 * none);
}
