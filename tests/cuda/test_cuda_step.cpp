// A whole training step of a tiny GPT-2 on the GPU against the CPU backend: loss, every unit's gradient
// and the parameters after one AdamW step, in both matmul precisions.
//
// Bounds (normwise relative error): the loss is one reduction over the whole forward: 1e-5 in fp32. The
// gradients pass through ~20 ops, each within 1e-4 normwise (test_cuda_ops), and realise ~1e-6: 1e-3.
// With bf16 GEMMs every product carries ~4e-3 relative error and the backward chains ~10 GEMMs: loss 2e-2,
// gradients 1e-1. The first AdamW step moves every parameter by lr * g / (|g| + eps) (~ lr sign(g)) plus the
// same weight decay on both sides, so the parameters are checked entry by entry:
//   - wherever the gradient is well above its error (|g| > 4 * bound * max|g|) the signs agree and the
//     updates differ by lr * eps * |1/g1 - 1/g2| plus rounding: within 1e-3 lr;
//   - elsewhere the sign may differ (entries that cancel to ~0), so the two differ by at most 2 lr.
// The bound is normwise, so "well above its error" assumes the error of each entry is at most the bound
// times max|g|: true of the elementwise kernels and of GEMMs whose products carry relative errors of
// the bound, not guaranteed by the normwise check alone.
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "harness.hpp"
#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/model/gpt.hpp"

using namespace mics;
using backends::Backend;
using backends::Buffer;
using backends::cuda::CudaBackend;
using backends::cuda::MatmulPrecision;

namespace {

const model::GptShape kTiny{2, 2, 32, 50, 128, 16};  // L, NH, C, V, Vp, maxT
constexpr int kB = 2, kT = 16;
constexpr float kLr = 1e-3f;

struct Result {
  float loss = 0, loss_after = 0;
  std::vector<std::vector<float>> grads, params;
};

Result train_step(Backend& backend, const std::vector<std::int32_t>& inputs, const std::vector<std::int32_t>& targets) {
  model::Gpt gpt(kTiny, backend, kB, kT);
  const auto& units = gpt.layout().units();
  std::vector<Buffer<float>> params, grads, m, v;
  std::vector<const float*> param_ptrs;
  std::vector<float*> grad_ptrs;
  for (std::size_t u = 0; u < units.size(); ++u) {
    const std::size_t n = units[u].numel;
    params.push_back(backend.alloc<float>(n));
    grads.push_back(backend.alloc<float>(n));
    m.push_back(backend.alloc<float>(n));
    v.push_back(backend.alloc<float>(n));
    backend.zero(params.back().data(), n);
    backend.zero(grads.back().data(), n);
    backend.zero(m.back().data(), n);
    backend.zero(v.back().data(), n);
    gpt.init_unit(static_cast<int>(u), params.back().data(), 7);
    param_ptrs.push_back(params.back().data());
    grad_ptrs.push_back(grads.back().data());
  }
  gpt.set_batch(inputs.data(), targets.data());
  Result r;
  r.loss = model::forward_backward(gpt, param_ptrs, grad_ptrs, 1.0f);
  for (std::size_t u = 0; u < units.size(); ++u) {
    const std::size_t n = units[u].numel;
    r.grads.emplace_back(n);
    backend.copy_to_host(r.grads.back().data(), grads[u].data(), n * sizeof(float));
    backend.adamw(params[u].data(), grads[u].data(), m[u].data(), v[u].data(), n,
                  backends::AdamWStep{kLr, 0.9f, 0.95f, 1e-8f, 0.1f, 1});
    r.params.emplace_back(n);
    backend.copy_to_host(r.params.back().data(), params[u].data(), n * sizeof(float));
  }
  r.loss_after = model::forward_backward(gpt, param_ptrs, std::span<float* const>(), 1.0f);
  return r;
}

// Parameters after the first AdamW step, entry by entry (see the bounds at the top).
void check_first_adamw_step(const std::vector<float>& got, const std::vector<float>& want,
                            const std::vector<float>& grads, double grad_bound) {
  double max_grad = 0.0;
  for (float g : grads) max_grad = std::fmax(max_grad, std::fabs(static_cast<double>(g)));
  const double determined = 4.0 * grad_bound * max_grad;
  double worst_determined = 0.0, worst_any = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    worst_any = std::fmax(worst_any, diff);
    if (std::fabs(static_cast<double>(grads[i])) > determined) worst_determined = std::fmax(worst_determined, diff);
  }
  CHECK(got.size() == want.size());
  const std::string worst = "worst differences " + std::to_string(worst_determined) + " (determined gradients), " +
                            std::to_string(worst_any) + " (any), lr " + std::to_string(kLr);
  cuda_test::check(worst_determined <= 1e-3 * kLr, "signs agree: update within 1e-3 lr", __FILE__, __LINE__, worst);
  cuda_test::check(worst_any <= 2.0 * kLr * (1.0 + 1e-3), "any entry within 2 lr", __FILE__, __LINE__, worst);
}

void compare(MatmulPrecision precision) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> token(0, kTiny.vocab - 1);
  std::vector<std::int32_t> inputs(kB * kT), targets(kB * kT);
  for (auto& t : inputs) t = token(rng);
  for (auto& t : targets) t = token(rng);
  backends::cpu::CpuBackend cpu(1);
  CudaBackend gpu(backends::cuda::CudaOptions{-1, precision});
  const Result want = train_step(cpu, inputs, targets);
  const Result got = train_step(gpu, inputs, targets);
  const bool bf16 = precision == MatmulPrecision::bf16;
  const double loss_bound = bf16 ? 2e-2 : 1e-5, grad_bound = bf16 ? 1e-1 : 1e-3;
  CHECK_REL(std::vector<float>{got.loss}, std::vector<float>{want.loss}, loss_bound);
  CHECK_REL(std::vector<float>{got.loss_after}, std::vector<float>{want.loss_after}, loss_bound);
  for (std::size_t u = 0; u < want.grads.size(); ++u) {
    CHECK_REL(got.grads[u], want.grads[u], grad_bound);
    check_first_adamw_step(got.params[u], want.params[u], want.grads[u], grad_bound);
  }
}

}  // namespace

GPU_TEST(training_step_fp32_matches_cpu) { compare(MatmulPrecision::fp32); }
GPU_TEST(training_step_bf16_matches_cpu) { compare(MatmulPrecision::bf16); }

int main(int argc, char** argv) { return mics::cuda_test::run_tests(argc, argv); }
