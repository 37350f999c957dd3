// Naive double-precision reference of every GPT-2 op, written from the formulas (not from the kernels),
// plus finite-difference and buffer helpers shared by the backend and model tests.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "mics/backends/backend.hpp"

namespace mics::testing {

using Vec = std::vector<double>;

inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng, double mean = 0.0, double sd = 1.0) {
  std::normal_distribution<double> dist(mean, sd);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

inline Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

inline backends::Buffer<float> upload(backends::Backend& be, const std::vector<float>& host) {
  auto buf = be.alloc<float>(host.size());
  be.copy_from_host(buf.data(), host.data(), host.size() * sizeof(float));
  return buf;
}

inline backends::Buffer<std::int32_t> upload(backends::Backend& be, const std::vector<std::int32_t>& host) {
  auto buf = be.alloc<std::int32_t>(host.size());
  be.copy_from_host(buf.data(), host.data(), host.size() * sizeof(std::int32_t));
  return buf;
}

inline std::vector<float> download(backends::Backend& be, const float* src, std::size_t n) {
  std::vector<float> host(n);
  be.copy_to_host(host.data(), src, n * sizeof(float));
  return host;
}

// d f / d x[i] by central differences in double. With h = 1e-6 and f smooth with O(1) derivatives, the
// truncation error is O(h^2) ~ 1e-12 and the rounding error O(eps_double * |f| / h) ~ 1e-10: exact for
// comparing against fp32 analytics.
inline double central_difference(const std::function<double(const Vec&)>& f, Vec x, std::size_t i, double h = 1e-6) {
  const double x0 = x[i];
  x[i] = x0 + h;
  const double up = f(x);
  x[i] = x0 - h;
  const double down = f(x);
  return (up - down) / (2 * h);
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

namespace ref {

// out (B,T,C) = wte[inp] + wpe[t]
inline Vec encoder(const std::vector<std::int32_t>& inp, const Vec& wte, const Vec& wpe, int B, int T, int C) {
  Vec out(static_cast<std::size_t>(B) * T * C);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++)
        out[(b * T + t) * C + c] = wte[static_cast<std::size_t>(inp[b * T + t]) * C + c] + wpe[t * C + c];
  return out;
}

inline Vec layernorm(const Vec& x, const Vec& w, const Vec& bias, int N, int C) {
  Vec out(x.size());
  for (int i = 0; i < N; i++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[i * C + c] - m) * (x[i * C + c] - m);
    v /= C;
    const double s = 1.0 / std::sqrt(v + 1e-5);
    for (int c = 0; c < C; c++) out[i * C + c] = (x[i * C + c] - m) * s * w[c] + bias[c];
  }
  return out;
}

// out (N,OC) = x (N,C) @ W (OC,C)^T + b
inline Vec matmul(const Vec& x, const Vec& W, const Vec* b, int N, int C, int OC) {
  Vec out(static_cast<std::size_t>(N) * OC);
  for (int i = 0; i < N; i++)
    for (int o = 0; o < OC; o++) {
      double s = b ? (*b)[o] : 0.0;
      for (int c = 0; c < C; c++) s += x[i * C + c] * W[o * C + c];
      out[i * OC + o] = s;
    }
  return out;
}

// causal attention on qkv (B,T,3C); returns out (B,T,C); att (B,NH,T,T) if given
inline Vec attention(const Vec& qkv, int B, int T, int C, int NH, Vec* att = nullptr) {
  const int hs = C / NH;
  Vec out(static_cast<std::size_t>(B) * T * C, 0.0);
  if (att) att->assign(static_cast<std::size_t>(B) * NH * T * T, 0.0);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        Vec score(t + 1);
        double mx = -1e300;
        for (int t2 = 0; t2 <= t; t2++) {
          double s = 0;
          for (int i = 0; i < hs; i++)
            s += qkv[(b * T + t) * 3 * C + h * hs + i] * qkv[(b * T + t2) * 3 * C + C + h * hs + i];
          score[t2] = s / std::sqrt(static_cast<double>(hs));
          mx = std::max(mx, score[t2]);
        }
        double z = 0;
        for (double& s : score) z += (s = std::exp(s - mx));
        for (int t2 = 0; t2 <= t; t2++) {
          const double p = score[t2] / z;
          if (att) (*att)[((static_cast<std::size_t>(b) * NH + h) * T + t) * T + t2] = p;
          for (int i = 0; i < hs; i++)
            out[(b * T + t) * C + h * hs + i] += p * qkv[(b * T + t2) * 3 * C + 2 * C + h * hs + i];
        }
      }
  return out;
}

inline Vec gelu(const Vec& x) {
  Vec out(x.size());
  const double k = std::sqrt(2.0 / M_PI);
  for (std::size_t i = 0; i < x.size(); i++)
    out[i] = 0.5 * x[i] * (1 + std::tanh(k * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  return out;
}

// per-row cross-entropy over the first V of Vp columns
inline Vec crossentropy(const Vec& logits, const std::vector<std::int32_t>& targets, int N, int V, int Vp) {
  Vec losses(N);
  for (int i = 0; i < N; i++) {
    double mx = -1e300;
    for (int v = 0; v < V; v++) mx = std::max(mx, logits[i * Vp + v]);
    double z = 0;
    for (int v = 0; v < V; v++) z += std::exp(logits[i * Vp + v] - mx);
    losses[i] = mx + std::log(z) - logits[i * Vp + targets[i]];
  }
  return losses;
}

inline Vec add(const Vec& a, const Vec& b) {
  Vec out(a.size());
  for (std::size_t i = 0; i < a.size(); i++) out[i] = a[i] + b[i];
  return out;
}

}  // namespace ref
}  // namespace mics::testing
