// Memory and traffic of the engine against the analytic values of mics.md, for every layout the
// current world allows with 2 ranks per emulated node.
#include <mpi.h>

#include "catch.hpp"
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/engine/engine.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/topology.hpp"
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
  MPI_Allreduce(&value, &total, 1, MPI_UINT64_T, MPI_SUM, comm);
  return total;
}

struct Layout {
  int ranks_per_node;
  int p;
};

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

// Parameters of each unit of small_shape(), by hand (formats.md): embedding Vp*C + maxT*C,
// block 12C^2 + 13C, final norm 2C.
std::vector<std::size_t> unit_sizes_by_hand() {
  const std::size_t C = 30, Vp = 128, maxT = kT;
  const std::size_t block = 12 * C * C + 13 * C;
  return {Vp * C + maxT * C, block, block, 2 * C};
}

TEST_CASE("model-state memory is 16 bytes per padded parameter / p, plus the gathered working set") {
  auto backend = backends::make_backend("cpu", 1);
  comm::MpiCollectives collectives;
  for (const Layout& layout : layouts()) {
    topology::Topology topo = topology::Topology::create({layout.ranks_per_node, layout.p});
    model::Gpt gpt(small_shape(), *backend, kB, kT);
    engine::EngineOptions options;
    options.micro_batch = kB;
    engine::Engine eng(gpt, *backend, collectives, topo, options);
    const engine::MemoryReport have = eng.memory();
    const engine::MemoryReport want = engine::Engine::expected_memory(gpt.layout(), layout.p);
    INFO("p = " << layout.p);
    const auto P = static_cast<std::size_t>(layout.p);
    std::size_t padded_total = 0, largest = 0;
    for (std::size_t n : unit_sizes_by_hand()) {
      padded_total += (n + P - 1) / P * P;
      largest = std::max(largest, (n + P - 1) / P * P);
    }
    // fp32 master, m, v and gradient accumulator: 16 bytes per parameter, 1/p of them per rank.
    CHECK(have.model_states == 16 * padded_total / P);
    // Two gathered units (current + prefetch) of the largest unit, only when something is gathered.
    CHECK(have.gathered == (layout.p > 1 ? 2 * largest * sizeof(float) : 0u));
    CHECK(have.model_states == want.model_states);
    CHECK(have.gathered == want.gathered);
    CHECK(have.gradients == want.gradients);
    CHECK(have.staging == want.staging);
    // Sharding loses nothing: the shards of a partition group tile every padded unit exactly.
    for (const auto& s : eng.sharding())
      CHECK(sum_over(s.shard_numel, topo.partition().handle()) == s.padded_numel);
  }
}

TEST_CASE("traffic per optimizer step matches the two-hop schedule") {
  auto backend = backends::make_backend("cpu", 1);
  comm::MpiCollectives collectives;
  for (const Layout& layout : layouts()) {
    for (int accum : {1, 4}) {
      topology::Topology topo = topology::Topology::create({layout.ranks_per_node, layout.p});
      const topology::Shape& shape = topo.shape();
      model::Gpt gpt(small_shape(), *backend, kB, kT);
      engine::EngineOptions options;
      options.micro_batch = kB;
      options.grad_accum = accum;
      options.hierarchical = true;  // used when the partition group spans nodes
      options.gather_bf16 = accum == 4;  // the bf16 gathers move half the bytes of the fp32 ones
      engine::Engine eng(gpt, *backend, collectives, topo, options);
      eng.init_parameters(7);
      const auto units = static_cast<std::uint64_t>(eng.sharding().size());
      const int p = layout.p, J = shape.nodes_per_partition, L = shape.ranks_per_node_in_partition;
      INFO("p = " << p << ", r = " << shape.replicas << ", J = " << J << ", grad_accum = " << accum);
      for (int step = 0; step < 2; ++step) {
        const engine::StepResult result = eng.step(step, 1e-3f, batch_fn(topo.placement().world_rank));
        auto counters = [&result](comm::GroupKind kind) { return result.traffic[static_cast<std::size_t>(kind)]; };
        const auto partition = counters(comm::GroupKind::partition);
        const auto replication = counters(comm::GroupKind::replication);
        const std::uint64_t norm_bytes = comm::ring_all_reduce_bytes(1, sizeof(double), p);

        // Second hop: one all-reduce per unit shard per optimizer step, whatever grad_accum is.
        std::uint64_t replica_bytes = 0, rs_bytes = 0;
        for (const auto& s : eng.sharding()) {
          replica_bytes += comm::ring_all_reduce_bytes(s.shard_numel, sizeof(float), shape.replicas);
          rs_bytes += comm::ring_reduce_scatter_bytes(s.shard_numel, sizeof(float), p);
        }
        CHECK(replication.collectives == (shape.replicas > 1 ? units : 0u));
        CHECK(replication.bytes_sent == replica_bytes);
        CHECK(replication.bytes_received == replica_bytes);

        // First hop: each micro-step reduce-scatters every unit inside the partition group only.
        const std::uint64_t gathered =
            result.gathered_shard_elements * (options.gather_bf16 ? sizeof(bf16) : sizeof(float));
        if (p == 1) {
          CHECK(result.gathers == 0);
          CHECK(result.reduce_scatters == 0);
          CHECK(partition.collectives == 1u);  // the gradient norm, in a group of one
          continue;
        }
        CHECK(static_cast<std::uint64_t>(result.reduce_scatters) == static_cast<std::uint64_t>(accum) * units);
        CHECK(result.gathers > 0);
        if (!eng.hierarchical()) {
          CHECK(J == 1);
          CHECK(partition.collectives == static_cast<std::uint64_t>(result.gathers + result.reduce_scatters + 1));
          CHECK(partition.bytes_sent == (p - 1) * gathered + accum * rs_bytes + norm_bytes);
        } else {
          // The gathers run on the inter- then intra-node groups; the partition group keeps the rest.
          const auto inter = counters(comm::GroupKind::inter_node);
          const auto intra = counters(comm::GroupKind::intra_node);
          CHECK(partition.collectives == static_cast<std::uint64_t>(result.reduce_scatters + 1));
          CHECK(partition.bytes_sent == accum * rs_bytes + norm_bytes);
          CHECK(inter.collectives == static_cast<std::uint64_t>(result.gathers));
          CHECK(intra.collectives == static_cast<std::uint64_t>(result.gathers));
          CHECK(inter.bytes_received == static_cast<std::uint64_t>(J - 1) * gathered);
          CHECK(intra.bytes_received == static_cast<std::uint64_t>(J * (L - 1)) * gathered);
          // Into each node come (J-1)/J of every gathered unit: L ranks x (J-1) shards of p = J*L.
          const std::uint64_t node_ingress = sum_over(inter.bytes_received, topo.node().handle());
          const std::uint64_t gathered_units = gathered * static_cast<std::uint64_t>(p);  // M, summed
          CHECK(node_ingress * static_cast<std::uint64_t>(J) == gathered_units * static_cast<std::uint64_t>(J - 1));
        }
      }
    }
  }
}

TEST_CASE("a hierarchical all-gather brings (J-1)/J of a unit into each node, a flat one (p-1)/p") {
  const int n = mics::test::world_size();
  if (n < 4) return;  // needs two nodes of two ranks at least
  comm::MpiCollectives collectives;
  topology::Topology topo = topology::Topology::create({2, n});  // p = world over n/2 nodes
  const int p = n, J = topo.shape().nodes_per_partition;
  const std::size_t c = 1001;  // divides nothing
  std::vector<float> shard(c, static_cast<float>(topo.placement().world_rank)), full(c * static_cast<std::size_t>(p));
  const std::uint64_t M = c * static_cast<std::uint64_t>(p) * sizeof(float);

  comm::PartitionGroup hierarchical(collectives, topo, true);
  topo.reset_counters();
  hierarchical.all_gather<float>(shard, full);
  const std::uint64_t hier_ingress = sum_over(topo.inter_node().counters().bytes_received, topo.node().handle());
  CHECK(hier_ingress * static_cast<std::uint64_t>(J) == M * static_cast<std::uint64_t>(J - 1));

  comm::PartitionGroup flat(collectives, topo, false);
  topo.reset_counters();
  flat.all_gather<float>(shard, full);
  // Ring: what enters a node is what its predecessor's boundary rank sends off-node.
  const std::uint64_t flat_ingress = sum_over(topo.partition().counters().bytes_sent_off_node, topo.node().handle());
  CHECK(flat_ingress * static_cast<std::uint64_t>(p) == M * static_cast<std::uint64_t>(p - 1));
  CHECK(hier_ingress < flat_ingress);
}

TEST_CASE("zero3 reduce-scatters over the whole world every micro-step") {
  const int n = mics::test::world_size();
  auto backend = backends::make_backend("cpu", 1);
  comm::MpiCollectives collectives;
  for (int accum : {1, 3}) {
    topology::Topology topo = topology::Topology::create({n, n});  // p = world inside one node: zero3
    model::Gpt gpt(small_shape(), *backend, kB, kT);
    engine::EngineOptions options;
    options.micro_batch = kB;
    options.grad_accum = accum;
    engine::Engine eng(gpt, *backend, collectives, topo, options);
    eng.init_parameters(3);
    const engine::StepResult result = eng.step(0, 1e-3f, batch_fn(topo.placement().world_rank));
    const auto& partition = result.traffic[static_cast<std::size_t>(comm::GroupKind::partition)];
    const auto units = static_cast<int>(eng.sharding().size());
    INFO("world " << n << ", grad_accum " << accum);
    CHECK(result.traffic[static_cast<std::size_t>(comm::GroupKind::replication)].collectives == 0u);
    if (n == 1) continue;
    CHECK(partition.participants == n);
    CHECK(result.reduce_scatters == accum * units);
    std::uint64_t rs_bytes = 0;
    for (const auto& s : eng.sharding()) rs_bytes += comm::ring_reduce_scatter_bytes(s.shard_numel, sizeof(float), n);
    CHECK(partition.bytes_sent == (n - 1) * result.gathered_shard_elements * sizeof(float) + accum * rs_bytes +
                                      comm::ring_all_reduce_bytes(1, sizeof(double), n));
  }
}

TEST_CASE("replicas of a shard stay bit-identical without any parameter broadcast") {
  auto backend = backends::make_backend("cpu", 1);
  comm::MpiCollectives collectives;
  for (const Layout& layout : layouts()) {
    topology::Topology topo = topology::Topology::create({layout.ranks_per_node, layout.p});
    if (topo.shape().replicas == 1) continue;
    model::Gpt gpt(small_shape(), *backend, kB, kT);
    engine::EngineOptions options;
    options.micro_batch = kB;
    options.grad_accum = 2;
    options.grad_clip = 0.5f;
    options.weight_decay = 0.1f;
    engine::Engine eng(gpt, *backend, collectives, topo, options);
    eng.init_parameters(11);
    for (int step = 0; step < 3; ++step) eng.step(step, 1e-2f, batch_fn(topo.placement().world_rank));
    INFO("p = " << layout.p << ", r = " << topo.shape().replicas);
    // Every rank's data differs, yet the shards of one replication group must agree to the bit.
    for (std::size_t u = 0; u < eng.sharding().size(); ++u) {
      const std::size_t n = eng.sharding()[u].shard_numel;
      for (float* shard : {eng.master_shard(static_cast<int>(u)), eng.adam_m_shard(static_cast<int>(u)),
                           eng.adam_v_shard(static_cast<int>(u))}) {
        std::vector<float> first(n);
        std::copy(shard, shard + n, first.begin());
        MPI_Bcast(first.data(), static_cast<int>(n), MPI_FLOAT, 0, topo.replication().handle());
        int differs = std::memcmp(first.data(), shard, n * sizeof(float)) != 0;
        MPI_Allreduce(MPI_IN_PLACE, &differs, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        CHECK(differs == 0);
      }
    }
  }
}
