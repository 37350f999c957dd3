// Every GPT-2 op of the CPU backend: forward against a naive double reference, backward against central
// differences of that reference. Each backward is checked on the scalar f = sum(w * op(x)) with random w,
// so dout = w and d f / d x is exactly what the op's backward must return.
//
// Tolerances: the double references and their central differences are exact to ~1e-10 (see
// central_difference). The fp32 kernels round each of at most K ~ 64 accumulated terms of size <= ~10 at
// relative 2^-24 ~ 6e-8, so their absolute error is below K * 10 * 6e-8 ~ 4e-5; we allow 1e-4 absolute plus
// 1e-4 relative. A wrong formula (a missing term, a sign, a factor) is off by O(0.1..1).
#include "catch.hpp"

#include <algorithm>
#include <cmath>

#include "mics/backends/backend.hpp"
#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/util/error.hpp"
#include "reference_ops.hpp"

using namespace mics;
using namespace mics::testing;
using backends::cpu::CpuBackend;

namespace {

constexpr double kAbsTol = 1e-4;
constexpr double kRelTol = 1e-4;

template <typename T>
void require_close(const std::vector<T>& got, const Vec& want, const char* what) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); i++) {
    INFO(what << "[" << i << "]: got " << got[i] << ", want " << want[i]);
    REQUIRE(std::abs(got[i] - want[i]) <= kAbsTol + kRelTol * std::abs(want[i]));
  }
}

// numeric d f / d x for every coordinate, f(x) = dot(w, forward(x))
Vec numeric_grad(const std::function<Vec(const Vec&)>& forward, const Vec& x, const Vec& w) {
  Vec g(x.size());
  auto f = [&](const Vec& xx) { return dot(w, forward(xx)); };
  for (std::size_t i = 0; i < x.size(); i++) g[i] = central_difference(f, x, i);
  return g;
}

Vec minus(const std::vector<float>& a, double b) {
  Vec out(a.size());
  for (std::size_t i = 0; i < a.size(); i++) out[i] = a[i] - b;
  return out;
}

}  // namespace

TEST_CASE("encoder forward and backward (dwte, dwpe accumulate)", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(1);
  const int B = 2, T = 3, C = 5, Vp = 7, maxT = 4;
  const std::vector<std::int32_t> inp = {3, 1, 3, 0, 3, 6};  // token 3 repeats: its gradient sums
  auto wte = random_floats(Vp * C, rng), wpe = random_floats(maxT * C, rng), w = random_floats(B * T * C, rng);
  auto d_wte = upload(be, wte), d_wpe = upload(be, wpe), d_w = upload(be, w);
  auto d_inp = upload(be, inp);
  auto out = be.alloc<float>(B * T * C);
  be.encoder_forward(out.data(), d_inp.data(), d_wte.data(), d_wpe.data(), B, T, C);
  require_close(download(be, out.data(), out.size()), ref::encoder(inp, to_double(wte), to_double(wpe), B, T, C),
                "out");

  // gradients start at 1 to show they accumulate
  auto dwte = upload(be, std::vector<float>(Vp * C, 1.0f)), dwpe = upload(be, std::vector<float>(maxT * C, 1.0f));
  be.encoder_backward(dwte.data(), dwpe.data(), d_w.data(), d_inp.data(), B, T, C);
  const Vec Wd = to_double(w);
  const Vec g_wte = numeric_grad([&](const Vec& x) { return ref::encoder(inp, x, to_double(wpe), B, T, C); },
                                 to_double(wte), Wd);
  const Vec g_wpe = numeric_grad([&](const Vec& x) { return ref::encoder(inp, to_double(wte), x, B, T, C); },
                                 to_double(wpe), Wd);
  require_close(download(be, dwte.data(), dwte.size()), ref::add(g_wte, Vec(g_wte.size(), 1.0)), "dwte");
  require_close(download(be, dwpe.data(), dwpe.size()), ref::add(g_wpe, Vec(g_wpe.size(), 1.0)), "dwpe");
  // rows of tokens never seen (2, 4, 5) and the unused position 3 get nothing
  auto host_dwte = download(be, dwte.data(), dwte.size());
  for (int c = 0; c < C; c++) CHECK(host_dwte[2 * C + c] == 1.0f);
}

TEST_CASE("layernorm forward and backward (dinp accumulates)", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(2);
  const int N = 4, C = 8;
  auto x = random_floats(N * C, rng, 3.0, 2.0);  // mean far from 0: the two-pass variance matters
  auto weight = random_floats(C, rng, 1.0, 0.3), bias = random_floats(C, rng), w = random_floats(N * C, rng);
  auto d_x = upload(be, x), d_weight = upload(be, weight), d_bias = upload(be, bias), d_w = upload(be, w);
  auto out = be.alloc<float>(N * C), mean = be.alloc<float>(N), rstd = be.alloc<float>(N);
  be.layernorm_forward(out.data(), mean.data(), rstd.data(), d_x.data(), d_weight.data(), d_bias.data(), N, C);
  const Vec X = to_double(x), Wt = to_double(weight), Bs = to_double(bias), Wd = to_double(w);
  require_close(download(be, out.data(), out.size()), ref::layernorm(X, Wt, Bs, N, C), "out");

  auto dx = upload(be, std::vector<float>(N * C, 0.5f)), dweight = upload(be, std::vector<float>(C, 0.5f)),
       dbias = upload(be, std::vector<float>(C, 0.5f));
  be.layernorm_backward(dx.data(), dweight.data(), dbias.data(), d_w.data(), d_x.data(), d_weight.data(), mean.data(),
                        rstd.data(), N, C);
  const Vec g_x = numeric_grad([&](const Vec& v) { return ref::layernorm(v, Wt, Bs, N, C); }, X, Wd);
  const Vec g_w = numeric_grad([&](const Vec& v) { return ref::layernorm(X, v, Bs, N, C); }, Wt, Wd);
  const Vec g_b = numeric_grad([&](const Vec& v) { return ref::layernorm(X, Wt, v, N, C); }, Bs, Wd);
  require_close(minus(download(be, dx.data(), dx.size()), 0.5), g_x, "dinp");
  require_close(minus(download(be, dweight.data(), C), 0.5), g_w, "dweight");
  require_close(minus(download(be, dbias.data(), C), 0.5), g_b, "dbias");
}

TEST_CASE("matmul forward and backward (dinp written, dweight and dbias accumulate)", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(3);
  const int N = 6, C = 5, OC = 7;
  auto x = random_floats(N * C, rng), W = random_floats(OC * C, rng), b = random_floats(OC, rng),
       w = random_floats(N * OC, rng);
  auto d_x = upload(be, x), d_W = upload(be, W), d_b = upload(be, b), d_w = upload(be, w);
  const Vec X = to_double(x), Wm = to_double(W), Bs = to_double(b), Wd = to_double(w);
  auto out = be.alloc<float>(N * OC);
  be.matmul_forward(out.data(), d_x.data(), d_W.data(), d_b.data(), N, C, OC);
  require_close(download(be, out.data(), out.size()), ref::matmul(X, Wm, &Bs, N, C, OC), "out");
  be.matmul_forward(out.data(), d_x.data(), d_W.data(), nullptr, N, C, OC);
  require_close(download(be, out.data(), out.size()), ref::matmul(X, Wm, nullptr, N, C, OC), "out without bias");

  auto dx = upload(be, std::vector<float>(N * C, 123.0f));  // garbage: dinp is overwritten
  auto dW = upload(be, std::vector<float>(OC * C, 0.5f)), db = upload(be, std::vector<float>(OC, 0.5f));
  be.matmul_backward(dx.data(), dW.data(), db.data(), d_w.data(), d_x.data(), d_W.data(), N, C, OC);
  const Vec g_x = numeric_grad([&](const Vec& v) { return ref::matmul(v, Wm, &Bs, N, C, OC); }, X, Wd);
  const Vec g_W = numeric_grad([&](const Vec& v) { return ref::matmul(X, v, &Bs, N, C, OC); }, Wm, Wd);
  const Vec g_b = numeric_grad([&](const Vec& v) { return ref::matmul(X, Wm, &v, N, C, OC); }, Bs, Wd);
  require_close(download(be, dx.data(), dx.size()), g_x, "dinp");
  require_close(minus(download(be, dW.data(), dW.size()), 0.5), g_W, "dweight");
  require_close(minus(download(be, db.data(), OC), 0.5), g_b, "dbias");

  // null dinp and dbias are skipped; dweight still accumulates (now twice the gradient)
  be.matmul_backward(nullptr, dW.data(), nullptr, d_w.data(), d_x.data(), d_W.data(), N, C, OC);
  Vec twice(g_W.size());
  for (std::size_t i = 0; i < g_W.size(); i++) twice[i] = 2 * g_W[i];
  require_close(minus(download(be, dW.data(), dW.size()), 0.5), twice, "dweight after two backwards");
}

TEST_CASE("causal attention forward and backward", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(4);
  const int B = 2, T = 5, C = 8, NH = 2;
  auto qkv = random_floats(B * T * 3 * C, rng), w = random_floats(B * T * C, rng);
  auto d_qkv = upload(be, qkv), d_w = upload(be, w);
  auto out = be.alloc<float>(B * T * C), att = be.alloc<float>(B * NH * T * T);
  be.attention_forward(out.data(), att.data(), d_qkv.data(), B, T, C, NH);
  Vec att_ref;
  const Vec Q = to_double(qkv), Wd = to_double(w);
  require_close(download(be, out.data(), out.size()), ref::attention(Q, B, T, C, NH, &att_ref), "out");
  // att holds the softmax weights: causal (exact zeros above the diagonal) and rows summing to 1
  require_close(download(be, att.data(), att.size()), att_ref, "att");

  auto dqkv = upload(be, std::vector<float>(B * T * 3 * C, 77.0f));  // garbage: dqkv is written
  be.attention_backward(dqkv.data(), d_w.data(), d_qkv.data(), att.data(), B, T, C, NH);
  const Vec g = numeric_grad([&](const Vec& v) { return ref::attention(v, B, T, C, NH); }, Q, Wd);
  require_close(download(be, dqkv.data(), dqkv.size()), g, "dqkv");
}

TEST_CASE("attention_decode: one query over a key/value cache equals the last row of attention", "[backends][ops]") {
  CpuBackend be(2);
  std::mt19937 rng(11);
  const int T = 7, C = 12, NH = 3, ld = 16;  // cache rows wider than C: only C columns are read
  auto qkv = random_floats(T * 3 * C, rng);
  const Vec want = ref::attention(to_double(qkv), 1, T, C, NH);
  std::vector<float> q(qkv.begin() + (T - 1) * 3 * C, qkv.begin() + (T - 1) * 3 * C + C);
  std::vector<float> k(T * ld, 55.0f), v(T * ld, 66.0f);
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++) {
      k[t * ld + c] = qkv[t * 3 * C + C + c];
      v[t * ld + c] = qkv[t * 3 * C + 2 * C + c];
    }
  auto d_q = upload(be, q), d_k = upload(be, k), d_v = upload(be, v);
  auto out = be.alloc<float>(C);
  be.attention_decode(out.data(), d_q.data(), d_k.data(), d_v.data(), T, C, NH, ld);
  require_close(download(be, out.data(), out.size()), Vec(want.begin() + (T - 1) * C, want.end()), "out");
  // the whole causal forward, row by row, from growing caches
  for (int t = 1; t <= T; t++) {
    std::vector<float> qt(qkv.begin() + (t - 1) * 3 * C, qkv.begin() + (t - 1) * 3 * C + C);
    auto d_qt = upload(be, qt);
    be.attention_decode(out.data(), d_qt.data(), d_k.data(), d_v.data(), t, C, NH, ld);
    require_close(download(be, out.data(), out.size()), Vec(want.begin() + (t - 1) * C, want.begin() + t * C), "row");
  }
}

TEST_CASE("attention softmax is stable for large scores", "[backends][ops]") {
  CpuBackend be(1);
  const int B = 1, T = 3, C = 2, NH = 1;
  // q.k / sqrt(2) reaches ~ 1e4: a naive exp overflows to inf and gives NaN
  std::vector<float> qkv(B * T * 3 * C, 0.0f);
  for (int t = 0; t < T; t++) {
    qkv[t * 3 * C + 0] = 100.0f;          // q
    qkv[t * 3 * C + C] = 100.0f * (t + 1);  // k
    qkv[t * 3 * C + 2 * C] = static_cast<float>(t);  // v
  }
  auto d_qkv = upload(be, qkv);
  auto out = be.alloc<float>(B * T * C), att = be.alloc<float>(B * NH * T * T);
  be.attention_forward(out.data(), att.data(), d_qkv.data(), B, T, C, NH);
  auto host = download(be, out.data(), out.size());
  // each row attends (essentially) only to its latest key, whose score is largest
  for (int t = 0; t < T; t++) CHECK(host[t * C] == Approx(static_cast<double>(t)).margin(1e-6));
}

TEST_CASE("gelu forward and backward", "[backends][ops]") {
  CpuBackend be(1);
  std::vector<float> x;
  for (int i = 0; i <= 40; i++) x.push_back(-5.0f + 0.25f * static_cast<float>(i));
  std::mt19937 rng(5);
  auto w = random_floats(x.size(), rng);
  auto d_x = upload(be, x), d_w = upload(be, w);
  auto out = be.alloc<float>(x.size());
  be.gelu_forward(out.data(), d_x.data(), x.size());
  require_close(download(be, out.data(), out.size()), ref::gelu(to_double(x)), "out");
  // in place: dinp aliases dout
  be.gelu_backward(d_w.data(), d_x.data(), d_w.data(), x.size());
  require_close(download(be, d_w.data(), x.size()), numeric_grad(ref::gelu, to_double(x), to_double(w)), "dinp");
}

TEST_CASE("residual add, also in place", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(6);
  auto a = random_floats(100, rng), b = random_floats(100, rng);
  auto d_a = upload(be, a), d_b = upload(be, b);
  be.residual_forward(d_a.data(), d_a.data(), d_b.data(), a.size());
  require_close(download(be, d_a.data(), a.size()), ref::add(to_double(a), to_double(b)), "out");
}

TEST_CASE("cross-entropy forward and in-place backward ignore padding columns", "[backends][ops]") {
  CpuBackend be(1);
  std::mt19937 rng(7);
  const int N = 3, V = 10, Vp = 16;
  auto logits = random_floats(N * Vp, rng, 0.0, 3.0);
  // padding columns hold huge logits: if they took part, they would swallow all probability
  for (int i = 0; i < N; i++)
    for (int v = V; v < Vp; v++) logits[i * Vp + v] = 1000.0f;
  const std::vector<std::int32_t> targets = {0, 9, 4};
  auto d_logits = upload(be, logits);
  auto d_targets = upload(be, targets);
  auto losses = be.alloc<float>(N), inv_sum = be.alloc<float>(N);
  be.crossentropy_forward(losses.data(), inv_sum.data(), d_logits.data(), d_targets.data(), N, V, Vp);
  const Vec L = to_double(logits);
  require_close(download(be, losses.data(), N), ref::crossentropy(L, targets, N, V, Vp), "losses");

  const float dloss = 0.25f;  // e.g. grad_scale / N
  be.crossentropy_backward(d_logits.data(), inv_sum.data(), d_targets.data(), dloss, N, V, Vp);
  const Vec g = numeric_grad([&](const Vec& v) { return ref::crossentropy(v, targets, N, V, Vp); }, L, Vec(N, dloss));
  auto dlogits = download(be, d_logits.data(), d_logits.size());
  require_close(dlogits, g, "dlogits");
  for (int i = 0; i < N; i++) {
    double row = 0;
    for (int v = V; v < Vp; v++) REQUIRE(dlogits[i * Vp + v] == 0.0f);
    for (int v = 0; v < V; v++) row += dlogits[i * Vp + v];
    CHECK(std::abs(row) < 1e-6);  // softmax sums to 1, the one-hot too: each row's gradient sums to 0
  }
}

TEST_CASE("make_backend: cpu works, cuda works or says why not, bf16 on the cpu is a named error", "[backends]") {
  auto be = backends::make_cpu_backend(1);
  CHECK(be->name() == "cpu");
  // Without a CUDA build or without a visible GPU the error says so; on a GPU machine it is the CUDA backend.
  try {
    auto gpu = backends::make_backend(config::BackendOptions{config::Device::cuda, 1});
    CHECK(gpu->name() == "cuda");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("CUDA"));
  }
  CHECK(backends::make_backend(config::BackendOptions{config::Device::cpu, 1, config::Matmul::fp32})->name() == "cpu");
  CHECK_THROWS_WITH(backends::make_backend(config::BackendOptions{config::Device::cpu, 1, config::Matmul::bf16}),
                    Catch::Contains("backend.matmul = bf16"));
}

TEST_CASE("buffers are 64-byte aligned, move-only owners", "[backends]") {
  CpuBackend be(1);
  for (std::size_t n : {1, 3, 17, 1000}) {
    auto buf = be.alloc<float>(n);
    CHECK(reinterpret_cast<std::uintptr_t>(buf.data()) % 64 == 0);
    CHECK(buf.size() == n);
    auto moved = std::move(buf);
    CHECK(buf.empty());
    CHECK(buf.data() == nullptr);
    CHECK(moved.size() == n);
  }
  backends::Buffer<float> none;
  CHECK(none.empty());
}
