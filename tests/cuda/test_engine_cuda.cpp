// The MiCS engine on the GPU against the same engine on the CPU backend, same ranks, same data: 1 rank
// (NCCL on its own GPU), 2 and 4 ranks sharing one GPU (host-staged MPI collectives, chosen by
// make_device_collectives). The layouts: 2 ranks as two emulated nodes with p = 2 (hierarchical gather);
// 4 ranks as four emulated nodes with p = 2 (hierarchical gather and two replicas).
//
// Bounds: losses are reductions over a forward whose ops agree within 1e-4 normwise (test_cuda_ops):
// 1e-4. Parameters after S AdamW steps: m/sqrt(v) of an entry whose gradient cancels to ~0 may take a
// different sign on the two backends, moving it by at most 2 lr per step: 4 lr S relative to the largest
// parameter (1, the layernorm weights).
#include <cstdint>
#include <memory>
#include <vector>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device_collectives.hpp"
#include "mics/engine/engine.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_harness.hpp"

using namespace mics;

namespace {

const model::GptShape kTiny{2, 2, 32, 50, 128, 16};  // L, NH, C, V, Vp, maxT
constexpr int kB = 2, kT = 16, kSteps = 3;
constexpr float kLr = 1e-4f;

struct Run {
  std::vector<float> losses;
  std::vector<std::vector<float>> params;
};

Run train(backends::Backend& backend, comm::Collectives& collectives, topology::Topology& topology) {
  model::Gpt gpt(kTiny, backend, kB, kT);
  engine::EngineOptions options;
  options.micro_batch = kB;
  options.grad_accum = 2;
  options.hierarchical = topology.shape().spans_nodes();
  options.weight_decay = 0.1f;
  options.grad_clip = 1.0f;
  engine::Engine engine(gpt, backend, collectives, topology, options);
  engine.init_parameters(11);
  const int rank = topology.placement().world_rank;
  Run run;
  for (int step = 0; step < kSteps; ++step) {
    const engine::BatchFn batch = [&](int micro, std::int32_t* inputs, std::int32_t* targets) {
      for (int i = 0; i < kB * kT; ++i) {
        inputs[i] = (i * 7 + rank * 31 + micro * 5 + step * 3) % kTiny.vocab;
        targets[i] = (i * 11 + rank * 17 + micro * 3 + step) % kTiny.vocab;
      }
    };
    run.losses.push_back(engine.step(step, kLr, batch).loss);
  }
  for (std::size_t u = 0; u < gpt.layout().units().size(); ++u) {
    run.params.emplace_back(gpt.layout().units()[u].numel);
    engine.gather_unit(static_cast<int>(u), run.params.back().data());
  }
  return run;
}

}  // namespace

GPU_TEST(engine_on_gpu_matches_cpu) {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  topology::Topology topology = topology::Topology::create({1, n >= 2 ? 2 : 1});
  comm::MpiCollectives mpi;
  backends::cpu::CpuBackend cpu(1);
  const Run want = train(cpu, mpi, topology);

  backends::cuda::CudaBackend gpu(backends::cuda::CudaOptions{-1, backends::cuda::MatmulPrecision::fp32});
  std::unique_ptr<comm::Collectives> device = backends::cuda::make_device_collectives(gpu, topology, mpi);
  CHECK(device != nullptr);
  const Run got = train(gpu, *device, topology);

  CHECK_REL(got.losses, want.losses, 1e-4);
  for (std::size_t u = 0; u < want.params.size(); ++u) CHECK_REL(got.params[u], want.params[u], 4.0 * kLr * kSteps);
}

int main(int argc, char** argv) { return mics::cuda_test::run_mpi_tests(argc, argv); }
