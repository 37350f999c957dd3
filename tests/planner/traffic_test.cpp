// The planner walks the engine's own schedule: the collectives it costs are exactly those an engine step
// issues. An actual step at small layouts (4 ranks as 2 or 1 emulated nodes) against the planner's
// per-step counts and ring bytes per group kind (docs/algorithms.md#traffic-per-optimizer-step).
#include <mpi.h>

#include "catch.hpp"
#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/engine/engine.hpp"
#include "mics/model/gpt.hpp"
#include "mics/planner/planner.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_world.hpp"

using namespace mics;

namespace {

constexpr int kB = 2, kT = 16;

model::GptShape small_shape() {
  model::GptShape s;
  s.layers = 3;
  s.heads = 2;
  s.channels = 30;  // units that need padding for p = 4
  s.vocab = 61;
  s.padded_vocab = 128;
  s.max_seq_len = kT;
  return s;
}

struct Layout {
  config::Strategy strategy;
  int ranks_per_node;
  int p;
  config::Switch hierarchical;
};

}  // namespace

TEST_CASE("the planner's collectives and bytes per step equal an engine step's counters") {
  REQUIRE(test::world_size() == 4);
  auto backend = backends::make_cpu_backend(1);
  comm::MpiTransport transport;
  comm::Collectives collectives(transport, transport);
  planner::Hardware hardware;  // any costs: only the counts are compared
  hardware.flop_rate = hardware.peak_flops = 1e12;
  hardware.memory_bandwidth = 1e11;
  hardware.intra = {1e-6, 1e11};
  hardware.inter = {1e-5, 1e10};
  const std::vector<Layout> layouts{
      {config::Strategy::ddp, 2, 1, config::Switch::off},
      {config::Strategy::mics, 2, 2, config::Switch::off},
      {config::Strategy::mics, 2, 4, config::Switch::on},
      {config::Strategy::mics, 2, 4, config::Switch::off},
      {config::Strategy::mics, 1, 2, config::Switch::off},
      {config::Strategy::zero3, 4, 4, config::Switch::off},
  };
  for (const Layout& layout : layouts) {
    for (int accum : {1, 3}) {
      for (bool bf16 : {false, true}) {
        config::ParallelOptions options;
        options.strategy = layout.strategy;
        options.partition_size = layout.p;
        options.partition_size_set = layout.strategy == config::Strategy::mics;
        options.hierarchical = layout.hierarchical;
        options.gather_dtype = bf16 ? config::GatherDtype::bf16 : config::GatherDtype::fp32;
        const topology::ParallelPlan plan = topology::make_plan(options, kB, accum, 4, layout.ranks_per_node);
        INFO(plan.describe());
        hardware.gpus_per_node = layout.ranks_per_node;
        const planner::TimePlan predicted = planner::plan_time(hardware, small_shape(), kT, plan, planner::Recompute::none);

        topology::Topology topo = topology::Topology::create(plan.shape);
        model::Gpt gpt(small_shape(), *backend, kB, kT);
        engine::Engine eng(gpt, *backend, collectives, topo, plan, {});
        eng.init_parameters(5);
        const engine::StepResult result = eng.step(0, 1e-3f, [](int micro, std::int32_t* in, std::int32_t* out) {
          for (int i = 0; i < kB * kT; ++i) {
            in[i] = (i * 7 + micro) % 61;
            out[i] = (i * 5 + micro) % 61;
          }
        });
        auto sent = [&](topology::GroupKind kind) {
          return static_cast<double>(result.traffic[static_cast<std::size_t>(kind)].bytes_sent);
        };
        CHECK(predicted.gathers == result.gathers);
        CHECK(predicted.reduce_scatters == result.reduce_scatters);
        CHECK(predicted.gathered_shard_elements == result.gathered_shard_elements);
        // The partition group also carries the gradient norm's all-reduce of one double.
        const int p = plan.shape.partition_size;
        const double norm = p > 1 ? static_cast<double>(2 * (p - 1) * 8 / p) : 0.0;
        CHECK(predicted.bytes_partition + norm == sent(topology::GroupKind::partition));
        CHECK(predicted.bytes_inter_node == sent(topology::GroupKind::inter_node));
        CHECK(predicted.bytes_intra_node == sent(topology::GroupKind::intra_node));
        CHECK(predicted.bytes_replication == sent(topology::GroupKind::replication));
      }
    }
  }
}

TEST_CASE("the planner's activation bytes are what model::Gpt allocates, and recomputation keeps less") {
  auto backend = backends::make_cpu_backend(1);
  for (int B : {1, 3}) {
    for (int T : {8, 16}) {
      model::Gpt gpt(small_shape(), *backend, B, T);
      CHECK(planner::activation_bytes(small_shape(), B, T, planner::Recompute::none) ==
            static_cast<double>(gpt.activation_bytes()));
      model::Gpt recomputing(small_shape(), *backend, B, T, config::Recompute::blocks);
      CHECK(planner::activation_bytes(small_shape(), B, T, planner::Recompute::blocks) ==
            static_cast<double>(recomputing.activation_bytes()));
      CHECK(recomputing.activation_bytes() < gpt.activation_bytes());
    }
  }
}

TEST_CASE("the planner's memory is the engine's expected_memory plus activations and reserve") {
  planner::Hardware hardware;
  hardware.memory_bytes = 1e6;
  hardware.reserve_bytes = 1000;
  topology::ParallelPlan plan = topology::make_plan({}, kB, 1, 4, 2);
  const planner::MemoryPlan m = planner::plan_memory(hardware, small_shape(), kT, plan, planner::Recompute::none);
  const engine::MemoryReport expected =
      engine::expected_memory(model::ParamLayout(small_shape()), 2, false, {kB, kT, config::Recompute::none});
  CHECK(m.engine.total() == expected.total());
  CHECK(m.activations == static_cast<double>(expected.activations));
  CHECK(m.total == static_cast<double>(expected.total()) + 1000);
  CHECK(m.fits == (m.total <= 1e6));
  hardware.memory_bytes = 1000;  // too small: the verdict names the size and the largest term
  const planner::MemoryPlan over = planner::plan_memory(hardware, small_shape(), kT, plan, planner::Recompute::none);
  CHECK_FALSE(over.fits);
  CHECK(over.verdict.find("over by") != std::string::npos);
  CHECK(over.verdict.find("largest term") != std::string::npos);
}
