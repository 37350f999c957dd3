// Memory and traffic of the engine, for every layout the current world allows with 2 ranks per emulated
// node: memory against sizes worked out by hand (docs/algorithms.md#memory-per-rank), traffic against the
// calls observed at the MPI layer (mpi_call_log.hpp) and the two-hop structure (docs/algorithms.md#traffic-accounting).
#include <mpi.h>

#include "catch.hpp"
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/engine/engine.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"
#include "mpi_call_log.hpp"
#include "mpi_world.hpp"

using namespace mics;

namespace {

constexpr int kB = 2, kT = 16;

model::GptShape small_shape() {
  model::GptShape s;
  s.layers = 2;
  s.heads = 2;
  s.channels = 30;  // a block has 12*30^2 + 13*30 = 11190 parameters: padding for p = 4 and 8
  s.vocab = 61;    // padded to 128
  s.padded_vocab = 128;
  s.max_seq_len = kT;
  return s;
}

// Tokens of (micro-step, position): any deterministic content will do for accounting.
engine::BatchFn batch_fn(int rank) {
  return [rank](int micro, std::int32_t* inputs, std::int32_t* targets) {
    for (int i = 0; i < kB * kT; ++i) {
      inputs[i] = (i * 7 + micro * 13 + rank * 3) % 61;
      targets[i] = (i * 5 + micro * 11 + rank) % 61;
    }
  };
}


std::uint64_t sum_over(std::uint64_t value, MPI_Comm comm) {
  std::uint64_t total = 0;
  PMPI_Allreduce(&value, &total, 1, MPI_UINT64_T, MPI_SUM, comm);  // not logged: not the engine's
  return total;
}

struct Layout {
  int ranks_per_node;
  int p;
};

// The plan of a layout (mics: hierarchical where the group spans nodes), and its groups.
topology::ParallelPlan plan_of(const Layout& layout, int grad_accum, bool gather_bf16 = false) {
  config::ParallelOptions options;
  options.partition_size = layout.p;
  options.gather_dtype = gather_bf16 ? config::GatherDtype::bf16 : config::GatherDtype::fp32;
  return topology::make_plan(options, kB, grad_accum, mics::test::world_size(), layout.ranks_per_node);
}

struct Mpi {
  comm::MpiTransport transport;
  comm::Collectives collectives{transport, transport};
};

// Bytes this rank sent per group, as the MPI calls logged since the last take add up.
std::uint64_t logged_bytes(const std::vector<test::MpiCall>& calls, const topology::Group& group,
                           std::uint64_t* count = nullptr) {
  std::uint64_t bytes = 0, n = 0;
  if (!group.valid()) return 0;
  for (const test::MpiCall& call : calls) {
    int same = MPI_UNEQUAL;
    MPI_Comm_compare(call.comm, group.handle(), &same);
    if (same != MPI_IDENT) continue;
    bytes += test::ring_bytes_sent(call);
    ++n;
  }
  if (count) *count = n;
  return bytes;
}

// Every partition size valid with 2 ranks per node (1 rank per node for a world of 1).
std::vector<Layout> layouts() {
  const int n = mics::test::world_size();
  const int rpn = n >= 2 ? 2 : 1;
  std::vector<Layout> out;
  for (int p = 1; p <= n; ++p) {
    try {
      topology::validate_shape(n, rpn, p);
      out.push_back({rpn, p});
    } catch (const Error&) {
    }
  }
  return out;
}

}  // namespace

// Parameters of each unit of small_shape(), by hand (docs/file-formats.md#parameter-count): embedding Vp*C + maxT*C,
// block 12C^2 + 13C, final norm 2C.
std::vector<std::size_t> unit_sizes_by_hand() {
  const std::size_t C = 30, Vp = 128, maxT = kT;
  const std::size_t block = 12 * C * C + 13 * C;
  return {Vp * C + maxT * C, block, block, 2 * C};
}

TEST_CASE("model-state memory is 16 bytes per padded parameter / p, plus the gathered working set") {
  auto backend = backends::make_cpu_backend(1);
  Mpi mpi;
  for (const Layout& layout : layouts()) {
    for (bool bf16_gathers : {false, true}) {
      const topology::ParallelPlan plan = plan_of(layout, 1, bf16_gathers);
      topology::Topology topo = topology::Topology::create(plan.shape);
      model::Gpt gpt(small_shape(), *backend, kB, kT);
      engine::Engine eng(gpt, *backend, mpi.collectives, topo, plan, {});
      const engine::MemoryReport have = eng.memory();
      const engine::MemoryReport want = engine::expected_memory(gpt.layout(), layout.p, plan.gather_bf16, {kB, kT});
      INFO("p = " << layout.p << ", bf16 gathers " << bf16_gathers);
      const auto P = static_cast<std::size_t>(layout.p);
      std::size_t padded_total = 0, largest = 0;
      for (std::size_t n : unit_sizes_by_hand()) {
        padded_total += (n + P - 1) / P * P;
        largest = std::max(largest, (n + P - 1) / P * P);
      }
      const std::size_t embedding = (unit_sizes_by_hand()[0] + P - 1) / P * P;
      // fp32 master, m, v and gradient accumulator: 16 bytes per parameter, 1/p of them per rank.
      CHECK(have.model_states == 16 * padded_total / P);
      // Two gathered units (current + prefetch) of the largest unit, only when something is gathered;
      // bf16 gathers add their two bf16 slots and a bf16 copy of this rank's shard (2 B/param / p).
      const std::size_t bf16_extra = plan.gather_bf16 ? 2 * largest * 2 + 2 * padded_total / P : 0;
      CHECK(have.gathered == (layout.p > 1 ? 2 * largest * sizeof(float) + bf16_extra : 0u));
      // Two block gradient buffers and the embedding's; one staging shard.
      CHECK(have.gradients == (layout.p > 1 ? (2 * largest + embedding) * sizeof(float) : 0u));
      CHECK(have.staging == (layout.p > 1 ? largest / P * sizeof(float) : 0u));
      CHECK(have.model_states == want.model_states);
      CHECK(have.gathered == want.gathered);
      CHECK(have.gradients == want.gradients);
      CHECK(have.staging == want.staging);
      CHECK(have.activations == want.activations);
      // Sharding loses nothing: the shards of a partition group tile every padded unit exactly.
      for (const auto& s : eng.sharding())
        CHECK(sum_over(s.shard_numel, topo.partition().handle()) == s.padded_numel);
    }
  }
}

TEST_CASE("traffic per optimizer step: the counters equal the MPI calls, in the two-hop structure") {
  auto backend = backends::make_cpu_backend(1);
  Mpi mpi;
  for (const Layout& layout : layouts()) {
    for (int accum : {1, 4}) {
      const topology::ParallelPlan plan = plan_of(layout, accum, accum == 4);
      topology::Topology topo = topology::Topology::create(plan.shape);
      const topology::Shape& shape = topo.shape();
      model::Gpt gpt(small_shape(), *backend, kB, kT);
      engine::Engine eng(gpt, *backend, mpi.collectives, topo, plan, {});
      eng.init_parameters(7);
      const auto units = static_cast<std::uint64_t>(eng.sharding().size());
      const int p = layout.p, r = shape.replicas, J = shape.nodes_per_partition;
      INFO("p = " << p << ", r = " << r << ", J = " << J << ", grad_accum = " << accum);
      for (int step = 0; step < 2; ++step) {
        (void)test::take_mpi_calls();
        const engine::StepResult result = eng.step(step, 1e-3f, batch_fn(topo.placement().world_rank));
        const std::vector<test::MpiCall> calls = test::take_mpi_calls();
        const auto counters = [&result](topology::GroupKind kind) {
          return result.traffic[static_cast<std::size_t>(kind)];
        };
        // Every group's counters are exactly what this rank's MPI calls on that group send in a ring.
        // (The hierarchical reduce-scatter runs on communicators of its own, counted under the same kinds.)
        for (const topology::Group* group : {&topo.world(), &topo.partition(), &topo.replication(),
                                             &topo.intra_node(), &topo.inter_node()}) {
          if (!group->valid()) continue;
          std::uint64_t logged_calls = 0, reduce_calls = 0;
          std::uint64_t logged = logged_bytes(calls, *group, &logged_calls);
          if (group == &topo.intra_node()) logged += logged_bytes(calls, topo.intra_node_reduce(), &reduce_calls);
          if (group == &topo.inter_node()) logged += logged_bytes(calls, topo.inter_node_reduce(), &reduce_calls);
          INFO("group " << topology::to_string(group->kind()));
          CHECK(counters(group->kind()).bytes_sent == logged);
          CHECK(counters(group->kind()).collectives == logged_calls + reduce_calls);
        }
        // Second hop: one all-reduce per unit shard per optimizer step across the replicas, whatever
        // grad_accum is, of the whole accumulated shard.
        std::uint64_t shard_bytes = 0;
        for (const auto& s : eng.sharding()) shard_bytes += s.shard_numel * sizeof(float);
        const auto replication = counters(topology::GroupKind::replication);
        CHECK(replication.collectives == (r > 1 ? units : 0u));
        CHECK(replication.bytes_sent == (r > 1 ? 2 * static_cast<std::uint64_t>(r - 1) * shard_bytes / r : 0u));
        // The loss over the world: one scalar per step, the metrics' only world traffic.
        CHECK(counters(topology::GroupKind::world).collectives == 1u);
        // First hop: each micro-step reduce-scatters every unit inside the partition group; p = 1 has no
        // gathers and no reduce-scatters, only the gradient norm over a group of one.
        const auto partition = counters(topology::GroupKind::partition);
        if (p == 1) {
          CHECK(result.gathers == 0);
          CHECK(result.reduce_scatters == 0);
          CHECK(partition.collectives == 1u);
          CHECK(partition.bytes_sent == 0u);
          continue;
        }
        CHECK(static_cast<std::uint64_t>(result.reduce_scatters) == static_cast<std::uint64_t>(accum) * units);
        // Every unit is gathered at least once per micro-step... except where a slot still holds it.
        CHECK(result.gathers >= static_cast<int>(units));
        CHECK(result.gathers <= accum * static_cast<int>(2 * units + 1));
        if (plan.hierarchical) {
          // Into each node come (J-1)/J of every gathered unit (L ranks x (J-1) shards of p = J*L), and out
          // of it (J-1)/J of every reduce-scattered fp32 unit gradient (L ranks x (J-1) node-summed shards).
          const auto inter = counters(topology::GroupKind::inter_node);
          const std::uint64_t elem = plan.gather_bf16 ? sizeof(bf16) : sizeof(float);
          const std::uint64_t node_ingress = sum_over(inter.bytes_received, topo.node().handle());
          const std::uint64_t node_egress = sum_over(inter.bytes_sent_off_node, topo.node().handle());
          const std::uint64_t gathered_units = result.gathered_shard_elements * elem * static_cast<std::uint64_t>(p);
          std::uint64_t padded = 0;
          for (const auto& s : eng.sharding()) padded += s.padded_numel;
          const std::uint64_t scattered_units = static_cast<std::uint64_t>(accum) * padded * sizeof(float);
          CHECK(node_ingress * static_cast<std::uint64_t>(J) ==
                (gathered_units + scattered_units) * static_cast<std::uint64_t>(J - 1));
          CHECK(node_egress == node_ingress);
          CHECK(inter.collectives == static_cast<std::uint64_t>(result.gathers + result.reduce_scatters));
          // Inside the node: each reduce-scatter is J row reduce-scatters, none of it off the node.
          const auto intra = counters(topology::GroupKind::intra_node);
          CHECK(intra.bytes_sent_off_node == 0u);
          CHECK(intra.collectives ==
                static_cast<std::uint64_t>(result.gathers + J * result.reduce_scatters));
          CHECK(counters(topology::GroupKind::partition).collectives == 1u);  // the norm only
        }
      }
    }
  }
}

TEST_CASE("a hierarchical all-gather brings (J-1)/J of a unit into each node, a flat one (p-1)/p") {
  const int n = mics::test::world_size();
  Mpi mpi;
  // Two emulated nodes at least: 2 ranks per node from 4 ranks on, 1 rank per node at 2 ranks.
  const int rpn = n >= 4 ? 2 : 1;
  config::ParallelOptions options;
  options.partition_size = n;
  const topology::ParallelPlan plan = topology::make_plan(options, 1, 1, n, rpn);
  if (n == 1) {
    CHECK_FALSE(plan.hierarchical);  // one rank is one node: nothing to cross
    return;
  }
  REQUIRE(plan.hierarchical);
  topology::Topology topo = topology::Topology::create(plan.shape);
  const int p = n, J = topo.shape().nodes_per_partition;
  const std::size_t c = 1001;  // divides nothing
  std::vector<float> shard(c, static_cast<float>(topo.placement().world_rank)), full(c * static_cast<std::size_t>(p));
  const std::uint64_t M = c * static_cast<std::uint64_t>(p) * sizeof(float);

  (void)mpi.collectives.take_traffic();
  comm::MicsGroups hierarchical(mpi.collectives, topo, plan);
  hierarchical.gather<float>(shard, full).wait();
  const auto hier = mpi.collectives.take_traffic()[static_cast<std::size_t>(topology::GroupKind::inter_node)];
  const std::uint64_t hier_ingress = sum_over(hier.bytes_received, topo.node().handle());
  CHECK(hier_ingress * static_cast<std::uint64_t>(J) == M * static_cast<std::uint64_t>(J - 1));

  options.hierarchical = config::Switch::off;
  comm::MicsGroups flat(mpi.collectives, topo, topology::make_plan(options, 1, 1, n, rpn));
  flat.gather<float>(shard, full).wait();
  // Ring: what enters a node is what its predecessor's boundary rank sends off-node.
  const auto partition = mpi.collectives.take_traffic()[static_cast<std::size_t>(topology::GroupKind::partition)];
  const std::uint64_t flat_ingress = sum_over(partition.bytes_sent_off_node, topo.node().handle());
  CHECK(flat_ingress * static_cast<std::uint64_t>(p) == M * static_cast<std::uint64_t>(p - 1));
  // With one rank per node the two are the same volume; with more, the hierarchy saves (p-J)/(p*J) of M.
  if (rpn == 1) {
    CHECK(hier_ingress == flat_ingress);
  } else {
    CHECK(hier_ingress < flat_ingress);
  }
}

TEST_CASE("a hierarchical reduce-scatter sends (J-1)/J of a unit off each node, a flat one (p-1)/p") {
  const int n = mics::test::world_size();
  Mpi mpi;
  const int rpn = n >= 4 ? 2 : 1;
  config::ParallelOptions options;
  options.partition_size = n;
  const topology::ParallelPlan plan = topology::make_plan(options, 1, 1, n, rpn);
  if (n == 1) {
    CHECK_FALSE(plan.hierarchical);
    return;
  }
  REQUIRE(plan.hierarchical);
  topology::Topology topo = topology::Topology::create(plan.shape);
  const int p = n, J = topo.shape().nodes_per_partition, L = topo.shape().ranks_per_node_in_partition;
  const std::size_t c = 1001;
  std::vector<float> full(c * static_cast<std::size_t>(p), 1.0f), shard(c);
  const std::uint64_t M = c * static_cast<std::uint64_t>(p) * sizeof(float);

  (void)mpi.collectives.take_traffic();
  (void)test::take_mpi_calls();
  comm::MicsGroups hierarchical(mpi.collectives, topo, plan);
  hierarchical.reduce_scatter(full, shard).wait();
  const std::vector<test::MpiCall> calls = test::take_mpi_calls();
  const comm::Traffic traffic = mpi.collectives.take_traffic();
  const auto inter = traffic[static_cast<std::size_t>(topology::GroupKind::inter_node)];
  const auto intra = traffic[static_cast<std::size_t>(topology::GroupKind::intra_node)];
  // The counters are what MPI was asked to do: J row reduce-scatters in the node, one across nodes.
  std::uint64_t inter_calls = 0, intra_calls = 0;
  CHECK(inter.bytes_sent == logged_bytes(calls, topo.inter_node_reduce(), &inter_calls));
  CHECK(intra.bytes_sent == logged_bytes(calls, topo.intra_node_reduce(), &intra_calls));
  CHECK(inter_calls == 1u);
  CHECK(intra_calls == static_cast<std::uint64_t>(J));
  CHECK(inter.bytes_sent == static_cast<std::uint64_t>(J - 1) * c * sizeof(float));
  CHECK(intra.bytes_sent == static_cast<std::uint64_t>(J) * static_cast<std::uint64_t>(L - 1) * c * sizeof(float));
  for (float x : shard) REQUIRE(x == static_cast<float>(p));
  const std::uint64_t hier_egress = sum_over(inter.bytes_sent_off_node, topo.node().handle());
  CHECK(hier_egress * static_cast<std::uint64_t>(J) == M * static_cast<std::uint64_t>(J - 1));

  options.hierarchical = config::Switch::off;
  comm::MicsGroups flat(mpi.collectives, topo, topology::make_plan(options, 1, 1, n, rpn));
  flat.reduce_scatter(full, shard).wait();
  const auto partition = mpi.collectives.take_traffic()[static_cast<std::size_t>(topology::GroupKind::partition)];
  const std::uint64_t flat_egress = sum_over(partition.bytes_sent_off_node, topo.node().handle());
  CHECK(flat_egress * static_cast<std::uint64_t>(p) == M * static_cast<std::uint64_t>(p - 1));
  if (rpn == 1) {
    CHECK(hier_egress == flat_egress);
  } else {
    CHECK(hier_egress < flat_egress);
  }
}

TEST_CASE("the memory plan counts activations: every block's, or with recompute each block's input and one block") {
  auto backend = backends::make_cpu_backend(1);
  Mpi mpi;
  const topology::ParallelPlan plan = plan_of(layouts().back(), 1);
  topology::Topology topo = topology::Topology::create(plan.shape);
  std::size_t totals[2] = {0, 0};
  for (config::Recompute recompute : {config::Recompute::none, config::Recompute::blocks}) {
    model::Gpt gpt(small_shape(), *backend, kB, kT, recompute);
    engine::Engine eng(gpt, *backend, mpi.collectives, topo, plan, {});
    const engine::MemoryReport have = eng.memory();
    const engine::MemoryReport want =
        engine::expected_memory(gpt.layout(), plan.shape.partition_size, plan.gather_bf16, {kB, kT, recompute});
    INFO("recompute " << config::to_string(recompute));
    CHECK(have.activations == gpt.activation_bytes());
    CHECK(want.activations == have.activations);
    CHECK(want.total() == have.total());
    totals[recompute == config::Recompute::blocks] = have.activations;
  }
  // small_shape has 2 blocks: keeping one block's activations instead of two saves exactly one block.
  const std::size_t N = kB * kT, C = 30;
  const std::size_t block = (15 * N * C + 4 * N + kB * 2 * kT * kT) * sizeof(float);
  CHECK(totals[0] - totals[1] == block);
}

TEST_CASE("zero3 reduce-scatters over the whole world every micro-step") {
  const int n = mics::test::world_size();
  auto backend = backends::make_cpu_backend(1);
  Mpi mpi;
  for (int accum : {1, 3}) {
    config::ParallelOptions options;
    options.strategy = config::Strategy::zero3;
    const topology::ParallelPlan plan = topology::make_plan(options, kB, accum, n, n);
    topology::Topology topo = topology::Topology::create(plan.shape);
    model::Gpt gpt(small_shape(), *backend, kB, kT);
    engine::Engine eng(gpt, *backend, mpi.collectives, topo, plan, {});
    eng.init_parameters(3);
    const engine::StepResult result = eng.step(0, 1e-3f, batch_fn(topo.placement().world_rank));
    const auto& partition = result.traffic[static_cast<std::size_t>(topology::GroupKind::partition)];
    const auto units = static_cast<int>(eng.sharding().size());
    INFO("world " << n << ", grad_accum " << accum);
    CHECK(plan.shape.partition_size == n);
    CHECK(result.traffic[static_cast<std::size_t>(topology::GroupKind::replication)].collectives == 0u);
    CHECK(result.reduce_scatters == (n > 1 ? accum * units : 0));
    // Gathers, reduce-scatters and the norm all run over the n ranks of the one partition group.
    std::uint64_t rs_bytes = 0;
    for (const auto& s : eng.sharding()) rs_bytes += (n - 1) * s.shard_numel * sizeof(float);
    const std::uint64_t norm_bytes = 2 * static_cast<std::uint64_t>(n - 1) * sizeof(double) / n;
    CHECK(partition.bytes_sent == (n - 1) * result.gathered_shard_elements * sizeof(float) + accum * rs_bytes + norm_bytes);
  }
}

TEST_CASE("replicas of a shard stay bit-identical without any parameter broadcast") {
  auto backend = backends::make_cpu_backend(1);
  Mpi mpi;
  for (const Layout& layout : layouts()) {
    const topology::ParallelPlan plan = plan_of(layout, 2);
    topology::Topology topo = topology::Topology::create(plan.shape);
    model::Gpt gpt(small_shape(), *backend, kB, kT);
    engine::OptimizerOptions optimizer;
    optimizer.grad_clip = 0.5f;
    optimizer.weight_decay = 0.1f;
    engine::Engine eng(gpt, *backend, mpi.collectives, topo, plan, optimizer);
    eng.init_parameters(11);
    for (int step = 0; step < 3; ++step) eng.step(step, 1e-2f, batch_fn(topo.placement().world_rank));
    INFO("p = " << layout.p << ", r = " << topo.shape().replicas);
    // Every rank's data differs, yet the shards of one replication group must agree to the bit (a group
    // of one agrees with itself: the check still runs).
    for (std::size_t u = 0; u < eng.sharding().size(); ++u) {
      const std::size_t n = eng.sharding()[u].shard_numel;
      for (float* shard : {eng.master_shard(static_cast<int>(u)), eng.adam_m_shard(static_cast<int>(u)),
                           eng.adam_v_shard(static_cast<int>(u))}) {
        std::vector<float> first(n);
        std::copy(shard, shard + n, first.begin());
        PMPI_Bcast(first.data(), static_cast<int>(n), MPI_FLOAT, 0, topo.replication().handle());
        int differs = std::memcmp(first.data(), shard, n * sizeof(float)) != 0;
        PMPI_Allreduce(MPI_IN_PLACE, &differs, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        CHECK(differs == 0);
      }
    }
  }
}
