// Every CudaBackend op, forward and backward, against double-precision reference loops on random inputs,
// in both matmul precisions. Builds with CUDA alone (see README.md); exits 77 without a GPU.
//
// Error bounds (normwise relative error, see harness.hpp), with u = 2^-24 (fp32) and 2^-9 (bf16):
//  kElementwise 1e-5: one or two float roundings plus expf/logf/sqrtf (<= 2 ulp each): a few u, x10 headroom.
//  kReduce 1e-4: fp32 sums of K <= 512 terms in some order (a warp tree, cuBLAS's split-K): the classic
//    bound is K*u*sum|terms| = 3e-5 sum|terms|, and normwise against the largest result the realised
//    error is ~sqrt(K)*u; 1e-4 covers the worst case for our shapes with margin.
//  kBf16 3e-2: CUBLAS_COMPUTE_32F_FAST_16BF rounds both GEMM operands to bf16 (relative 2^-9 each, 2^-8 =
//    3.9e-3 per product), accumulates in fp32; random-sign sums keep that relative size normwise, and the
//    attention chain (two GEMMs with a softmax between) doubles it: 3e-2 leaves ~4x headroom. Non-GEMM
//    ops do not depend on the precision and keep the fp32 bounds.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../backends/reference_ops.hpp"
#include "harness.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/util/bf16.hpp"

using mics::backends::Buffer;
using mics::backends::cuda::CudaBackend;
using mics::backends::cuda::MatmulPrecision;
using Vec = std::vector<double>;

namespace {

constexpr double kElementwise = 1e-5;
constexpr double kReduce = 1e-4;
constexpr double kBf16 = 3e-2;

// Created on first use (after the harness found a device) and kept to process exit: the CUDA runtime
// tears its context down itself.
CudaBackend& gpu() {
  static CudaBackend* backend = new CudaBackend();
  return *backend;
}

std::mt19937& rng() {
  static std::mt19937 engine(20240607);
  return engine;
}

std::vector<float> randn(std::size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng());
  return v;
}

std::vector<std::int32_t> randint(std::size_t n, int bound) {
  std::uniform_int_distribution<int> dist(0, bound - 1);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = dist(rng());
  return v;
}

template <class T>
Buffer<T> upload(const std::vector<T>& host) {
  Buffer<T> buffer = gpu().alloc<T>(host.size());
  gpu().copy_from_host(buffer.data(), host.data(), host.size() * sizeof(T));
  return buffer;
}

template <class T>
std::vector<T> download(const Buffer<T>& buffer) {
  std::vector<T> host(buffer.size());
  gpu().copy_to_host(host.data(), buffer.data(), host.size() * sizeof(T));
  return host;
}


const MatmulPrecision kPrecisions[] = {MatmulPrecision::fp32, MatmulPrecision::bf16};
double gemm_bound(MatmulPrecision p) { return p == MatmulPrecision::bf16 ? kBf16 : kReduce; }

// --- references (double) ------------------------------------------------------------------------------

Vec ref_attention_backward(const Vec& dout, const Vec& qkv, const Vec& att, int B, int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  Vec dqkv(qkv.size(), 0.0);
  std::vector<double> dp(static_cast<std::size_t>(T));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const double* a = &att[((static_cast<std::size_t>(b) * NH + h) * T + t) * T];
        const double* dy = &dout[(static_cast<std::size_t>(b) * T + t) * C + h * hs];
        const std::size_t qt = (static_cast<std::size_t>(b) * T + t) * 3 * C + h * hs;
        double weighted = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const std::size_t vt = (static_cast<std::size_t>(b) * T + t2) * 3 * C + 2 * C + h * hs;
          double d = 0;
          for (int i = 0; i < hs; ++i) {
            d += dy[i] * qkv[vt + i];
            dqkv[vt + i] += a[t2] * dy[i];
          }
          dp[t2] = d;
          weighted += a[t2] * d;
        }
        for (int t2 = 0; t2 <= t; ++t2) {
          const double ds = a[t2] * (dp[t2] - weighted) * scale;
          const std::size_t kt = (static_cast<std::size_t>(b) * T + t2) * 3 * C + C + h * hs;
          for (int i = 0; i < hs; ++i) {
            dqkv[qt + i] += ds * qkv[kt + i];
            dqkv[kt + i] += ds * qkv[qt + i];
          }
        }
      }
  return dqkv;
}

double gelu_grad(double x) {
  const double k = std::sqrt(2.0 / M_PI);
  const double th = std::tanh(k * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * x * x);
}

}  // namespace

// --- encoder ----------------------------------------------------------------------------------------------

GPU_TEST(encoder_forward_backward) {
  const int B = 3, T = 9, C = 300, Vp = 64, N = B * T;  // C > 256: two column blocks in the dwte grid
  const auto inp = randint(N, 7);  // few tokens: buckets with many positions
  const auto wte = randn(static_cast<std::size_t>(Vp) * C), wpe = randn(static_cast<std::size_t>(T) * C);
  const auto dout = randn(static_cast<std::size_t>(N) * C);
  const auto dwte0 = randn(wte.size()), dwpe0 = randn(wpe.size());
  auto d_inp = upload(inp);
  auto d_wte = upload(wte), d_wpe = upload(wpe), d_dout = upload(dout), d_dwte = upload(dwte0),
       d_dwpe = upload(dwpe0);
  auto d_out = gpu().alloc<float>(static_cast<std::size_t>(N) * C);
  gpu().encoder_forward(d_out.data(), d_inp.data(), d_wte.data(), d_wpe.data(), B, T, C);
  // batch row 0 alone first, then all B rows: the bucket scratch grows between the calls
  gpu().encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_inp.data(), 1, T, C);
  gpu().encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_inp.data(), B, T, C);
  Vec out(static_cast<std::size_t>(N) * C), dwte = mics::testing::to_double(dwte0), dwpe = mics::testing::to_double(dwpe0);
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < C; ++c) {
      out[i * C + c] = static_cast<double>(wte[inp[i] * C + c]) + wpe[(i % T) * C + c];
      const int times = i < T ? 2 : 1;  // row 0 went through both calls
      dwte[inp[i] * C + c] += times * dout[i * C + c];
      dwpe[(i % T) * C + c] += times * dout[i * C + c];
    }
  CHECK_REL(download(d_out), out, kElementwise);
  CHECK_REL(download(d_dwte), dwte, kElementwise);
  CHECK_REL(download(d_dwpe), dwpe, kElementwise);
}

// The contract behind determinism: each token's rows are summed in float in ascending position order, then
// added once; bit-identical to that host emulation, and to itself on a second run.
GPU_TEST(encoder_backward_sums_buckets_in_position_order) {
  const int B = 4, T = 33, C = 260, Vp = 128, N = B * T;
  auto inp = randint(N, 9);
  inp[5] = 100;  // a token with a single position, far from the others
  const auto dout = randn(static_cast<std::size_t>(N) * C);
  const auto dwte0 = randn(static_cast<std::size_t>(Vp) * C), dwpe0 = randn(static_cast<std::size_t>(T) * C);
  auto d_inp = upload(inp);
  auto d_dout = upload(dout);
  std::vector<float> want = dwte0;
  for (int token = 0; token < Vp; ++token)
    for (int c = 0; c < C; ++c) {
      float sum = 0.0f;
      bool any = false;
      for (int p = 0; p < N; ++p) {
        if (inp[p] != token) continue;
        sum += dout[static_cast<std::size_t>(p) * C + c];
        any = true;
      }
      if (any) want[static_cast<std::size_t>(token) * C + c] += sum;
    }
  for (int run = 0; run < 2; ++run) {
    auto d_dwte = upload(dwte0), d_dwpe = upload(dwpe0);
    gpu().encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), d_inp.data(), B, T, C);
    CHECK(download(d_dwte) == want);
  }
}

// --- layernorm ---------------------------------------------------------------------------------------------

GPU_TEST(layernorm_forward_backward) {
  // N > kColumnChunks, not a multiple of it: 3 rows per chunk and empty last chunks; N % 8 != 0: a last
  // block with fewer rows than warps; C > 256: two column blocks in the parameter-gradient grids
  const int N = 150, C = 300;
  const auto inp = randn(static_cast<std::size_t>(N) * C, 2.0f);
  auto shifted = inp;
  for (float& x : shifted) x += 3.0f;  // |mean| > std: the two-pass variance matters
  const auto w = randn(C), b = randn(C), dout = randn(shifted.size());
  const auto dinp0 = randn(shifted.size()), dw0 = randn(C), db0 = randn(C);
  auto d_inp = upload(shifted), d_w = upload(w), d_b = upload(b), d_dout = upload(dout);
  auto d_dinp = upload(dinp0), d_dw = upload(dw0), d_db = upload(db0);
  auto d_out = gpu().alloc<float>(shifted.size());
  auto d_mean = gpu().alloc<float>(N), d_rstd = gpu().alloc<float>(N);
  gpu().layernorm_forward(d_out.data(), d_mean.data(), d_rstd.data(), d_inp.data(), d_w.data(), d_b.data(), N, C);
  gpu().layernorm_backward(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), d_w.data(),
                           d_mean.data(), d_rstd.data(), N, C);
  Vec out(shifted.size()), mean(N), rstd(N), dinp = mics::testing::to_double(dinp0), dw = mics::testing::to_double(dw0), db = mics::testing::to_double(db0);
  for (int i = 0; i < N; ++i) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += shifted[i * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (shifted[i * C + c] - m) * (shifted[i * C + c] - m);
    const double s = 1.0 / std::sqrt(v / C + 1e-5);
    mean[i] = m;
    rstd[i] = s;
    double gm = 0, gnm = 0;
    for (int c = 0; c < C; ++c) {
      const double norm = (shifted[i * C + c] - m) * s;
      out[i * C + c] = norm * w[c] + b[c];
      const double g = static_cast<double>(dout[i * C + c]) * w[c];
      gm += g;
      gnm += g * norm;
      dw[c] += dout[i * C + c] * norm;
      db[c] += dout[i * C + c];
    }
    gm /= C;
    gnm /= C;
    for (int c = 0; c < C; ++c) {
      const double norm = (shifted[i * C + c] - m) * s;
      dinp[i * C + c] += s * (static_cast<double>(dout[i * C + c]) * w[c] - gm - norm * gnm);
    }
  }
  CHECK_REL(download(d_out), out, kReduce);
  CHECK_REL(download(d_mean), mean, kReduce);
  CHECK_REL(download(d_rstd), rstd, kReduce);
  CHECK_REL(download(d_dinp), dinp, kReduce);
  CHECK_REL(download(d_dw), dw, kReduce);
  CHECK_REL(download(d_db), db, kReduce);
}

// --- matmul --------------------------------------------------------------------------------------------------

GPU_TEST(matmul_forward_backward) {
  const int N = 150, C = 70, OC = 300;  // bias partials: 3 rows per chunk, empty last chunks, two column blocks
  const auto inp = randn(static_cast<std::size_t>(N) * C), w = randn(static_cast<std::size_t>(OC) * C),
             b = randn(OC), dout = randn(static_cast<std::size_t>(N) * OC);
  const auto dw0 = randn(w.size()), db0 = randn(OC);
  const Vec bias = mics::testing::to_double(b);
  const Vec out_bias = mics::testing::ref::matmul(mics::testing::to_double(inp), mics::testing::to_double(w), &bias, N, C, OC);
  const Vec out_plain = mics::testing::ref::matmul(mics::testing::to_double(inp), mics::testing::to_double(w), nullptr, N, C, OC);
  Vec dinp(inp.size(), 0.0), dw = mics::testing::to_double(dw0), db = mics::testing::to_double(db0);
  for (int i = 0; i < N; ++i)
    for (int o = 0; o < OC; ++o) {
      const double g = dout[i * OC + o];
      db[o] += g;
      for (int c = 0; c < C; ++c) {
        dinp[i * C + c] += g * w[o * C + c];
        dw[o * C + c] += g * inp[i * C + c];
      }
    }
  for (const MatmulPrecision p : kPrecisions) {
    gpu().set_precision(p);
    const double bound = gemm_bound(p);
    auto d_inp = upload(inp), d_w = upload(w), d_b = upload(b), d_dout = upload(dout);
    auto d_out = gpu().alloc<float>(static_cast<std::size_t>(N) * OC);
    gpu().matmul_forward(d_out.data(), d_inp.data(), d_w.data(), d_b.data(), N, C, OC);
    CHECK_REL(download(d_out), out_bias, bound);
    gpu().matmul_forward(d_out.data(), d_inp.data(), d_w.data(), nullptr, N, C, OC);
    CHECK_REL(download(d_out), out_plain, bound);
    auto d_dinp = upload(randn(inp.size()));  // garbage: dinp is written, not accumulated
    auto d_dw = upload(dw0), d_db = upload(db0);
    gpu().matmul_backward(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(), d_w.data(), N, C,
                          OC);
    CHECK_REL(download(d_dinp), dinp, bound);
    CHECK_REL(download(d_dw), dw, bound);
    CHECK_REL(download(d_db), db, kReduce);
    // no dinp, no dbias: only dweight accumulates (a second time)
    gpu().matmul_backward(nullptr, d_dw.data(), nullptr, d_dout.data(), d_inp.data(), d_w.data(), N, C, OC);
    Vec dw2 = dw;
    for (std::size_t i = 0; i < dw2.size(); ++i) dw2[i] += dw[i] - dw0[i];
    CHECK_REL(download(d_dw), dw2, bound);
    CHECK_REL(download(d_db), db, kReduce);
  }
  gpu().set_precision(MatmulPrecision::fp32);
}

// --- attention -------------------------------------------------------------------------------------------------

GPU_TEST(attention_decode_matches_reference) {
  // T > 256 threads: the score loop wraps; ld > C: only C columns of each cache row are read
  const int T = 300, C = 48, NH = 3, ld = 64;
  const auto qkv = randn(static_cast<std::size_t>(T) * 3 * C);
  const Vec want = mics::testing::ref::attention(mics::testing::to_double(qkv), 1, T, C, NH);
  std::vector<float> q(qkv.begin() + static_cast<std::ptrdiff_t>((T - 1) * 3 * C),
                       qkv.begin() + static_cast<std::ptrdiff_t>((T - 1) * 3 * C + C));
  std::vector<float> k(static_cast<std::size_t>(T) * ld, 5.0f), v(static_cast<std::size_t>(T) * ld, 6.0f);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) {
      k[static_cast<std::size_t>(t) * ld + c] = qkv[static_cast<std::size_t>(t) * 3 * C + C + c];
      v[static_cast<std::size_t>(t) * ld + c] = qkv[static_cast<std::size_t>(t) * 3 * C + 2 * C + c];
    }
  auto d_q = upload(q), d_k = upload(k), d_v = upload(v);
  auto d_out = gpu().alloc<float>(static_cast<std::size_t>(C));
  gpu().attention_decode(d_out.data(), d_q.data(), d_k.data(), d_v.data(), T, C, NH, ld);
  CHECK_REL(download(d_out), Vec(want.end() - C, want.end()), gemm_bound(MatmulPrecision::fp32));
}

GPU_TEST(attention_forward_backward) {
  // T > 32: the warp loops wrap; B*NH*T = 222 rows, not a multiple of the 8 per block; hs = 16
  const int B = 2, T = 37, C = 48, NH = 3;
  const auto qkv = randn(static_cast<std::size_t>(B) * T * 3 * C);
  const auto dout = randn(static_cast<std::size_t>(B) * T * C);
  Vec want_att;
  const Vec want_out = mics::testing::ref::attention(mics::testing::to_double(qkv), B, T, C, NH, &want_att);
  const Vec dqkv = ref_attention_backward(mics::testing::to_double(dout), mics::testing::to_double(qkv), want_att, B, T, C, NH);
  for (const MatmulPrecision p : kPrecisions) {
    gpu().set_precision(p);
    const double bound = gemm_bound(p);
    auto d_qkv = upload(qkv), d_dout = upload(dout);
    auto d_out = gpu().alloc<float>(dout.size());
    auto d_att = gpu().alloc<float>(static_cast<std::size_t>(B) * NH * T * T);
    gpu().attention_forward(d_out.data(), d_att.data(), d_qkv.data(), B, T, C, NH);
    const auto att = download(d_att);
    CHECK_REL(download(d_out), want_out, bound);
    CHECK_REL(att, want_att, bound);
    bool upper_zero = true;
    for (int r = 0; r < B * NH * T; ++r)
      for (int t2 = r % T + 1; t2 < T; ++t2) upper_zero = upper_zero && att[static_cast<std::size_t>(r) * T + t2] == 0.0f;
    CHECK(upper_zero);
    auto d_dqkv = upload(randn(qkv.size()));  // garbage: dqkv is written
    gpu().attention_backward(d_dqkv.data(), d_dout.data(), d_qkv.data(), d_att.data(), B, T, C, NH);
    CHECK_REL(download(d_dqkv), dqkv, bound);
  }
  gpu().set_precision(MatmulPrecision::fp32);
}

// --- gelu, residual ------------------------------------------------------------------------------------------

GPU_TEST(gelu_forward_backward) {
  const std::size_t n = 10007;
  const auto x = randn(n, 3.0f), dout = randn(n);
  const Vec out = mics::testing::ref::gelu(mics::testing::to_double(x));
  Vec dinp(n);
  for (std::size_t i = 0; i < n; ++i) dinp[i] = gelu_grad(x[i]) * dout[i];
  auto d_x = upload(x), d_dout = upload(dout);
  auto d_out = gpu().alloc<float>(n);
  gpu().gelu_forward(d_out.data(), d_x.data(), n);
  CHECK_REL(download(d_out), out, kElementwise);
  gpu().gelu_backward(d_dout.data(), d_x.data(), d_dout.data(), n);  // dinp aliases dout
  CHECK_REL(download(d_dout), dinp, kElementwise);
}

GPU_TEST(residual_forward) {
  const std::size_t n = 4099;
  const auto a = randn(n), b = randn(n);
  Vec out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(a[i]) + b[i];
  auto d_a = upload(a), d_b = upload(b);
  gpu().residual_forward(d_a.data(), d_a.data(), d_b.data(), n);  // out aliases a
  CHECK_REL(download(d_a), out, kElementwise);
}

// --- cross-entropy -------------------------------------------------------------------------------------------

GPU_TEST(crossentropy_forward_backward) {
  const int N = 7, V = 1000, Vp = 1024;  // V > the 512-thread block; 24 padding columns
  auto logits = randn(static_cast<std::size_t>(N) * Vp, 3.0f);
  for (int i = 0; i < N; ++i)
    for (int v = V; v < Vp; ++v) logits[i * Vp + v] = 1e4f;  // padding must never take part
  // row 0: masked columns (exp = 0, as on the CPU), the first ones every thread of the block reads
  for (int v = 0; v < 600; ++v) logits[v] = -INFINITY;
  auto targets = randint(N, V);
  targets[0] = V - 1;
  const float dloss = 0.37f;
  Vec losses(N), numerators(static_cast<std::size_t>(N) * V), inv_sum(N), dlogits(static_cast<std::size_t>(N) * Vp, 0.0);
  for (int i = 0; i < N; ++i) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; ++v) mx = std::fmax(mx, logits[i * Vp + v]);
    for (int v = 0; v < V; ++v) sum += std::exp(logits[i * Vp + v] - mx);
    losses[i] = std::log(sum) - (logits[i * Vp + targets[i]] - mx);
    inv_sum[i] = 1.0 / sum;
    for (int v = 0; v < V; ++v) {
      numerators[i * V + v] = std::exp(logits[i * Vp + v] - mx);
      dlogits[i * Vp + v] = dloss * (numerators[i * V + v] / sum - (v == targets[i] ? 1.0 : 0.0));
    }
  }
  auto d_logits = upload(logits);
  auto d_targets = upload(targets);
  auto d_losses = gpu().alloc<float>(N), d_inv = gpu().alloc<float>(N);
  gpu().crossentropy_forward(d_losses.data(), d_inv.data(), d_logits.data(), d_targets.data(), N, V, Vp);
  CHECK_REL(download(d_losses), losses, kElementwise);
  CHECK_REL(download(d_inv), inv_sum, kReduce);
  const auto after = download(d_logits);
  std::vector<float> real(static_cast<std::size_t>(N) * V);
  for (int i = 0; i < N; ++i)
    for (int v = 0; v < V; ++v) real[i * V + v] = after[i * Vp + v];
  CHECK_REL(real, numerators, kElementwise);
  gpu().crossentropy_backward(d_logits.data(), d_inv.data(), d_targets.data(), dloss, N, V, Vp);
  const auto grads = download(d_logits);
  CHECK_REL(grads, dlogits, kReduce);
  bool padding_zero = true;
  for (int i = 0; i < N; ++i)
    for (int v = V; v < Vp; ++v) padding_zero = padding_zero && grads[i * Vp + v] == 0.0f;
  CHECK(padding_zero);
}

// --- vector ops, AdamW, bf16 -------------------------------------------------------------------------------------

GPU_TEST(vector_ops) {
  const std::size_t n = (1u << 20) + 3;  // more than one grid-stride sweep of the fixed sum grid
  const auto x = randn(n), y = randn(n);
  auto d_x = upload(x), d_y = upload(y);
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double got = gpu().sum_squares(d_x.data(), n);
  CHECK(std::fabs(got - ss) <= 1e-9 * ss);  // double accumulation of n float squares: n * 2^-53 << 1e-9
  CHECK(gpu().sum_squares(d_x.data(), n) == got);  // deterministic
  CHECK(gpu().sum_squares(d_x.data(), 0) == 0.0);
  gpu().axpy(d_y.data(), -0.5f, d_x.data(), n);
  Vec axpy(n);
  for (std::size_t i = 0; i < n; ++i) axpy[i] = y[i] - 0.5 * x[i];
  CHECK_REL(download(d_y), axpy, kElementwise);
  gpu().scale(d_y.data(), 3.0f, n);
  for (double& v : axpy) v *= 3.0;
  CHECK_REL(download(d_y), axpy, kElementwise);
  gpu().copy(d_y.data(), d_x.data(), n);
  CHECK(download(d_y) == x);
  gpu().fill(d_y.data(), n, 2.5f);
  CHECK(download(d_y) == std::vector<float>(n, 2.5f));
}

GPU_TEST(adamw_step) {
  const std::size_t n = 3001;
  const auto p0 = randn(n), g = randn(n), m0 = randn(n, 0.1f);
  auto v0 = randn(n, 0.1f);
  for (float& v : v0) v = v * v;
  const mics::backends::AdamWStep hp{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.7f};  // grad_scale != 1
  auto d_p = upload(p0), d_g = upload(g), d_m = upload(m0), d_v = upload(v0);
  gpu().adamw(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, hp);
  Vec p(n), m(n), v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double gs = static_cast<double>(g[i]) * hp.grad_scale;
    m[i] = 0.9 * m0[i] + 0.1 * gs;
    v[i] = 0.95 * v0[i] + 0.05 * gs * gs;
    const double mhat = m[i] / (1.0 - std::pow(0.9, 3)), vhat = v[i] / (1.0 - std::pow(0.95, 3));
    p[i] = p0[i] - 1e-2 * (mhat / (std::sqrt(vhat) + 1e-8) + 0.1 * p0[i]);
  }
  CHECK_REL(download(d_p), p, kElementwise);
  CHECK_REL(download(d_m), m, kElementwise);
  CHECK_REL(download(d_v), v, kElementwise);
}

// The numerics guard's count: the elements whose update leaves p, m or v not finite (each chosen far from the
// overflow threshold, so fp32 rounding and FMA contraction cannot change the verdict), nothing written.
GPU_TEST(adamw_count_nonfinite) {
  const std::size_t n = 3001;
  auto p = randn(n), g = randn(n), m = randn(n, 0.1f);
  auto v = randn(n, 0.1f);
  for (float& x : v) x = x * x;
  g[7] = 1e30f;            // its square overflows the second moment
  g[100] = std::nanf("");  // NaN in, NaN out
  m[2000] = INFINITY;      // an infinite moment
  p[3000] = 3.3e38f;       // pushed past FLT_MAX by the large learning rate only
  for (const float lr : {1e-3f, 3e37f}) {
    const mics::backends::AdamWStep hp{lr, 0.9f, 0.95f, 1e-8f, 0.1f, 2, 0.5f};
    std::uint64_t want = 0;  // in double: whether the fp32 result overflows
    const double limit = std::numeric_limits<float>::max();
    for (std::size_t i = 0; i < n; ++i) {
      const double gs = static_cast<double>(g[i]) * hp.grad_scale;
      const double mi = 0.9 * m[i] + 0.1 * gs, vi = 0.95 * v[i] + 0.05 * gs * gs;
      const double pi = p[i] - static_cast<double>(lr) * (mi * hp.m_scale() / (std::sqrt(vi * hp.v_scale()) + 1e-8) +
                                                          0.1 * p[i]);
      want += !(std::fabs(pi) <= limit && std::fabs(mi) <= limit && std::fabs(vi) <= limit);
    }
    auto d_p = upload(p), d_g = upload(g), d_m = upload(m), d_v = upload(v);
    gpu().adamw_count_nonfinite(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, hp);
    gpu().adamw_count_nonfinite(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, hp);  // counts add up
    CHECK(gpu().take_nonfinite_count() == 2 * want);
    CHECK(gpu().take_nonfinite_count() == 0u);  // taking resets
    CHECK(download(d_p) == p);
    CHECK(download(d_v) == v);
    CHECK(want >= (lr > 1.0f ? 4u : 3u));
  }
}

GPU_TEST(bf16_conversions) {
  std::vector<float> x = randn(5000, 10.0f);
  // exact ties (round to even both ways, also subnormal), extremes, overflow to infinity, signed zero,
  // NaNs (quiet, and a negative signalling one with a payload: sign and top payload bits are kept)
  for (std::uint32_t bits : {0x3f808000u, 0x3f818000u, 0x00018000u, 0x00028000u, 0x7f7fffffu, 0x00000001u,
                             0x80000000u, 0x7fc00000u, 0xffa00001u, 0xff800000u}) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    x.push_back(f);
  }
  auto d_x = upload(x);
  auto d_h = gpu().alloc<mics::bf16>(x.size());
  auto d_back = gpu().alloc<float>(x.size());
  gpu().to_bf16(d_h.data(), d_x.data(), x.size());
  gpu().from_bf16(d_back.data(), d_h.data(), x.size());
  const auto h = download(d_h);
  const auto back = download(d_back);
  bool same = true, widened = true;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const mics::bf16 want(x[i]);
    same = same && h[i].bits == want.bits;  // bit-identical to the host, NaNs included
    const float w = h[i].to_float();
    widened = widened && std::memcmp(&w, &back[i], sizeof(float)) == 0;  // exact widening, NaN bits too
  }
  CHECK(same);
  CHECK(widened);
}

int main(int argc, char** argv) { return mics::cuda_test::run_tests(argc, argv); }
