// A whole training step of a tiny GPT-2 on the GPU against the CPU backend: loss, every unit's gradient
// and the parameters after one AdamW step, in both matmul precisions.
//
// Bounds (normwise relative error): the loss is one reduction over the whole forward: 1e-5 in fp32. The
// gradients pass through ~20 ops, each within 1e-4 normwise (test_cuda_ops), and realise ~1e-6: 1e-3.
// With bf16 GEMMs every product carries ~4e-3 relative error and the backward chains ~10 GEMMs: loss 2e-2,
// gradients 1e-1. After AdamW, m/sqrt(v) is +-1 on the first step, so a gradient entry whose sign differs
// between the backends (only ones that cancel to ~0) moves its parameter by at most 2 lr: parameters
// agree within 4 lr relative to the largest parameter (the layernorm weights, 1).
#include <cstdint>
#include <random>
#include <span>
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
    CHECK_REL(got.params[u], want.params[u], 4.0 * kLr);
  }
}

}  // namespace

GPU_TEST(training_step_fp32_matches_cpu) { compare(MatmulPrecision::fp32); }
GPU_TEST(training_step_bf16_matches_cpu) { compare(MatmulPrecision::bf16); }

int main(int argc, char** argv) { return mics::cuda_test::run_tests(argc, argv); }
