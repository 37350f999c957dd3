// The MiCS engine on the GPU against the same engine on the CPU backend, same ranks, same data, with fp32
// and with bf16 parameter gathers: through host-staged MPI on any rank count, and through NCCL when every
// rank has a GPU of its own (1 rank on a one-GPU machine; 2 and 4 ranks there share the GPU, and that case
// is skipped). The layouts: 2 ranks as two emulated nodes with p = 2 (hierarchical gather); 4 ranks as
// four emulated nodes with p = 2 (hierarchical gather and two replicas).
//
// Bounds: losses are reductions over a forward whose ops agree within 1e-4 normwise (test_cuda_ops):
// 1e-4. Gradient norms (before clipping) of the first step, taken at the same parameters, follow the
// gradients, which agree within 1e-3 normwise (test_cuda_step; ~1e-6 realised): 1e-3; later steps are taken
// at parameters that already differ (below): 1e-2. The norms are what catches a broken gradient
// reduce-scatter or replica all-reduce: AdamW moves every parameter by about lr whatever its gradient, so
// the parameters (and the losses of a few steps) hardly see it. Parameters after S AdamW steps: m/sqrt(v)
// of an entry whose gradient cancels to ~0 may take a different sign on the two backends, moving it by at
// most 2 lr per step: 4 lr S relative to the largest parameter (1, the layernorm weights); a broken gather
// (or gather_unit) is far outside it.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mics/backends/cpu/cpu_backend.hpp"
#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/data_transport.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/host_staged_transport.hpp"
#include "mics/backends/cuda/nccl_transport.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/engine/engine.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_harness.hpp"

using namespace mics;

namespace {

const model::GptShape kTiny{2, 2, 32, 50, 128, 16};  // L, NH, C, V, Vp, maxT
constexpr int kB = 2, kT = 16, kSteps = 3;
constexpr float kLr = 1e-4f;

struct Run {
  std::vector<float> losses;
  std::vector<double> norms;
  std::vector<std::vector<float>> params;
};

// The layout of every case: p = 2 (1 on one rank) over nodes of one rank each.
topology::ParallelPlan plan(bool gather_bf16) {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  config::ParallelOptions parallel;
  parallel.strategy = config::Strategy::mics;
  parallel.partition_size = n >= 2 ? 2 : 1;
  parallel.partition_size_set = true;
  parallel.gather_dtype = gather_bf16 ? config::GatherDtype::bf16 : config::GatherDtype::fp32;
  return topology::make_plan(parallel, kB, /*grad_accum=*/2, n, /*ranks_per_node=*/1);
}

Run train(backends::Backend& backend, comm::Collectives& collectives, const topology::Topology& topology,
          const topology::ParallelPlan& plan) {
  model::Gpt gpt(kTiny, backend, kB, kT);
  engine::OptimizerOptions optimizer;
  optimizer.weight_decay = 0.1f;
  optimizer.grad_clip = 1.0f;
  engine::Engine engine(gpt, backend, collectives, topology, plan, optimizer);
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
    const engine::StepResult result = engine.step(step, kLr, batch);
    run.losses.push_back(result.loss);
    run.norms.push_back(result.grad_norm);
  }
  for (std::size_t u = 0; u < gpt.layout().units().size(); ++u) {
    run.params.emplace_back(gpt.layout().units()[u].numel);
    engine.gather_unit(static_cast<int>(u), run.params.back().data());
  }
  return run;
}

void compare(const char* what, const Run& got, const Run& want) {
  const int failures_before = cuda_test::failures();
  CHECK_REL(got.losses, want.losses, 1e-4);
  CHECK_REL(std::vector<double>(got.norms.begin(), got.norms.begin() + 1),
            std::vector<double>(want.norms.begin(), want.norms.begin() + 1), 1e-3);
  CHECK_REL(got.norms, want.norms, 1e-2);
  CHECK(got.params.size() == want.params.size());
  for (std::size_t u = 0; u < want.params.size() && u < got.params.size(); ++u)
    CHECK_REL(got.params[u], want.params[u], 4.0 * kLr * kSteps);
  if (cuda_test::failures() != failures_before) std::fprintf(stderr, "  (with %s)\n", what);
}

// The engine on the GPU with `transport` (made by `make`) against the CPU engine with MPI, fp32 and bf16 gathers.
template <class Make>
void gpu_matches_cpu(const char* what, const Make& make) {
  const topology::Topology topology = topology::Topology::create(plan(false).shape);
  comm::MpiTransport mpi;
  comm::Collectives cpu_collectives(mpi, mpi);
  backends::cpu::CpuBackend cpu(1);
  backends::cuda::CudaBackend gpu(backends::cuda::CudaOptions{-1, backends::cuda::MatmulPrecision::fp32});
  for (const bool bf16 : {false, true}) {
    const topology::ParallelPlan layout = plan(bf16);
    const Run want = train(cpu, cpu_collectives, topology, layout);
    std::unique_ptr<comm::Transport> transport = make(topology, gpu, mpi);
    comm::Collectives gpu_collectives(*transport, mpi);
    compare((std::string(what) + (bf16 ? ", bf16 gathers" : "")).c_str(), train(gpu, gpu_collectives, topology, layout),
            want);
  }
}

}  // namespace

GPU_TEST(engine_host_staged_matches_cpu) {
  gpu_matches_cpu("host-staged", [](const topology::Topology&, backends::cuda::CudaBackend& gpu,
                                    comm::MpiTransport& mpi) -> std::unique_ptr<comm::Transport> {
    return std::make_unique<backends::cuda::HostStagedTransport>(gpu.stream(), mpi);
  });
}

GPU_TEST(engine_nccl_matches_cpu) {
  // The device CudaBackend{} picks (the same on every rank: ranks_share_gpus is collective and agreed).
  if (backends::cuda::ranks_share_gpus(backends::cuda::device_for_this_process(), MPI_COMM_WORLD))
    SKIP_CASE("ranks share GPUs here and NCCL needs one GPU per rank (runs with fewer ranks)");
  gpu_matches_cpu("NCCL", [](const topology::Topology& topology, backends::cuda::CudaBackend& gpu,
                             comm::MpiTransport&) -> std::unique_ptr<comm::Transport> {
    return std::make_unique<backends::cuda::NcclTransport>(topology, gpu.device(), gpu.stream());
  });
}

int main(int argc, char** argv) { return mics::cuda_test::run_mpi_tests(argc, argv); }
