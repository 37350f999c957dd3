// Typed collectives over MiCS groups: hierarchical all-gather bit-identical to the flat one, hierarchical
// reduce-scatter within the summation-order bound of the flat one, exact
// reductions on integer-valued data, non-blocking handles, and the traffic the typed layer counts,
// checked against byte counts derived here from the group sizes and message sizes.
#include <mpi.h>

#include "catch.hpp"
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "mics/comm/collectives.hpp"
#include "mics/comm/groups.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/topology/plan.hpp"
#include "mpi_world.hpp"

using mics::bf16;
using namespace mics::comm;
using mics::test::topology;
using mics::topology::Topology;

namespace {

// The MPI transport on both channels (the CPU backend's setup).
struct Mpi {
  MpiTransport transport;
  Collectives collectives{transport, transport};
};

template <class T>
T make(double x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16(static_cast<float>(x));
  } else {
    return static_cast<T>(x);
  }
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Distinct, non-integer values: a wrong slot or a rounding shows up as different bits.
double shard_value(int shard, std::size_t k) { return 0.37 * shard + 1.0e-3 * static_cast<double>(k) + 0.123; }

// (ranks_per_node, p) layouts of this world whose partition group spans nodes.
std::vector<std::pair<int, int>> spanning_layouts(int world) {
  std::vector<std::pair<int, int>> out;
  for (int rpn = 1; rpn <= world; ++rpn) {
    for (int p = rpn * 2; p <= world; p += rpn) {
      if (world % rpn == 0 && world % p == 0) out.emplace_back(rpn, p);
    }
  }
  return out;
}

const TrafficCounters& of(const Traffic& traffic, mics::topology::GroupKind kind) {
  return traffic[static_cast<std::size_t>(kind)];
}

}  // namespace

TEST_CASE("bf16 rounds to nearest even and keeps NaN", "[bf16]") {
  CHECK(bf16(1.0f).bits == 0x3F80);
  CHECK(bf16(1.0f + 0x1p-8f).bits == 0x3F80);        // half-way, even neighbour is 1.0
  CHECK(bf16(1.0f + 3 * 0x1p-8f).bits == 0x3F82);    // half-way, even neighbour is up
  CHECK(bf16(1.0f + 0x1p-8f + 0x1p-20f).bits == 0x3F81);  // above half-way rounds up
  CHECK(bf16(-2.5f).to_float() == -2.5f);
  CHECK(std::isnan(bf16(std::numeric_limits<float>::quiet_NaN()).to_float()));
  CHECK(std::isinf(bf16(std::numeric_limits<float>::max()).to_float()));
  CHECK(bf16(256.0f).to_float() == 256.0f);
}

TEMPLATE_TEST_CASE("hierarchical all-gather equals the flat all-gather bit for bit", "[comm][mpi]", float, bf16) {
  using T = TestType;
  Mpi mpi;
  const int world = mics::test::world_size();
  const auto layouts = spanning_layouts(world);
  if (layouts.empty()) {
    // A world of 1 has no partition group that spans nodes: the flat gather is the identity.
    CHECK(world == 1);
    return;
  }
  for (auto [rpn, p] : layouts) {
    Topology topo = topology(rpn, p);
    const int J = topo.shape().nodes_per_partition;
    const int L = topo.shape().ranks_per_node_in_partition;
    const int q = topo.placement().partition_rank;
    for (std::size_t c : {std::size_t{1}, std::size_t{3}, std::size_t{1001}}) {
      INFO("ranks_per_node " << rpn << " p " << p << " J " << J << " L " << L << " c " << c);
      std::vector<T> shard(c);
      for (std::size_t k = 0; k < c; ++k) shard[k] = make<T>(shard_value(q, k));
      std::vector<T> flat(c * static_cast<std::size_t>(p)), hier(flat.size()), polled(flat.size());
      mpi.collectives.all_gather<T>(shard, flat, topo.partition()).wait();
      (void)mpi.collectives.take_traffic();
      mpi.collectives.hierarchical_all_gather<T>(shard, hier, topo.inter_node(), topo.intra_node()).wait();
      CHECK(same_bits(flat, hier));
      for (int i = 0; i < p; ++i) {
        for (std::size_t k = 0; k < c; ++k) {
          REQUIRE(flat[static_cast<std::size_t>(i) * c + k] == make<T>(shard_value(i, k)));
        }
      }
      // Ring bytes: J-1 chunks of c inter-node, every hop to another node; then each of the L ranks of a
      // node forwards J*c elements L-1 times, none of them off the node.
      const std::uint64_t elem = sizeof(T);
      const Traffic traffic = mpi.collectives.take_traffic();
      const TrafficCounters& inter = of(traffic, mics::topology::GroupKind::inter_node);
      const TrafficCounters& intra = of(traffic, mics::topology::GroupKind::intra_node);
      CHECK(inter.collectives == 1);
      CHECK(inter.bytes_sent == static_cast<std::uint64_t>(J - 1) * c * elem);
      CHECK(inter.bytes_received == inter.bytes_sent);
      CHECK(inter.bytes_sent_off_node == inter.bytes_sent);
      CHECK(intra.bytes_sent == static_cast<std::uint64_t>(L - 1) * static_cast<std::uint64_t>(J) * c * elem);
      CHECK(intra.bytes_sent_off_node == 0);
      CHECK(of(traffic, mics::topology::GroupKind::partition).collectives == 0);

      // Non-blocking: the transport's progress() alone moves both stages along.
      Request request = mpi.collectives.hierarchical_all_gather<T>(shard, polled, topo.inter_node(), topo.intra_node());
      for (int turns = 0; turns < 10000000 && !request.test(); ++turns) mpi.collectives.progress();
      CHECK(request.done());
      CHECK(same_bits(flat, polled));

      // The engine's group object takes the hierarchical path when the plan says so.
      mics::config::ParallelOptions options;
      options.partition_size = p;
      const auto plan = mics::topology::make_plan(options, 1, 1, world, rpn);
      CHECK(plan.hierarchical);
      MicsGroups groups(mpi.collectives, topo, plan);
      std::vector<T> via_groups(flat.size());
      groups.gather<T>(shard, via_groups).wait();
      CHECK(same_bits(flat, via_groups));
    }
  }
}

// A value in [-1, 1) of (partition rank, element), the same on every rank that computes it.
double noise(int rank, std::size_t e) {
  std::uint64_t z = (static_cast<std::uint64_t>(rank) << 32) + e + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1p-52 - 1.0;
}

TEMPLATE_TEST_CASE("hierarchical reduce-scatter: exact on integers, within the summation-order bound otherwise, "
                   "(J-1)/J of the data off each node", "[comm][mpi]", float, double) {
  using T = TestType;
  Mpi mpi;
  const int world = mics::test::world_size();
  const auto layouts = spanning_layouts(world);
  if (layouts.empty()) {
    CHECK(world == 1);
    return;
  }
  // Each output is a sum of p terms. Any order of p-1 additions in precision u (2^-24 for float) is within
  // gamma_{p-1} * sum|x_i| of the exact sum, gamma_k = k*u / (1 - k*u); two orders (the flat one, whatever
  // tree MPI uses, and intra-node then inter-node) are within twice that of each other
  // (docs/algorithms.md#hierarchical-reduce-scatter).
  const double u = std::numeric_limits<T>::epsilon() / 2;
  for (auto [rpn, p] : layouts) {
    Topology topo = topology(rpn, p);
    const int J = topo.shape().nodes_per_partition;
    const int L = topo.shape().ranks_per_node_in_partition;
    const int q = topo.placement().partition_rank;
    const double gamma = (p - 1) * u / (1 - (p - 1) * u);
    for (std::size_t c : {std::size_t{1}, std::size_t{3}, std::size_t{1001}}) {
      INFO("ranks_per_node " << rpn << " p " << p << " J " << J << " L " << L << " c " << c);
      const std::size_t n = c * static_cast<std::size_t>(p);
      std::vector<T> integers(n), noisy(n);
      for (std::size_t e = 0; e < n; ++e) {
        integers[e] = static_cast<T>((q + 1) * static_cast<int>(e % 5 + 1));
        noisy[e] = static_cast<T>(noise(q, e));
      }
      std::vector<T> flat(c), hier(c), polled(c);
      // Integers: every partial sum is exact, so any order gives the same bits.
      mpi.collectives.reduce_scatter<T>(integers, flat, ReduceOp::sum, topo.partition()).wait();
      mpi.collectives.hierarchical_reduce_scatter<T>(integers, hier, ReduceOp::sum, topo.inter_node(), topo.intra_node())
          .wait();
      CHECK(same_bits(flat, hier));
      for (std::size_t k = 0; k < c; ++k)
        REQUIRE(hier[k] == static_cast<T>(p * (p + 1) / 2 * static_cast<int>((static_cast<std::size_t>(q) * c + k) % 5 + 1)));

      // Non-integer data: within the bound of the exact sum and of the flat result.
      mpi.collectives.reduce_scatter<T>(noisy, flat, ReduceOp::sum, topo.partition()).wait();
      (void)mpi.collectives.take_traffic();
      mpi.collectives.hierarchical_reduce_scatter<T>(noisy, hier, ReduceOp::sum, topo.inter_node(), topo.intra_node())
          .wait();
      for (std::size_t k = 0; k < c; ++k) {
        const std::size_t e = static_cast<std::size_t>(q) * c + k;
        double exact = 0, magnitude = 0;
        for (int r = 0; r < p; ++r) {
          const double x = static_cast<double>(static_cast<T>(noise(r, e)));
          exact += x;
          magnitude += std::abs(x);
        }
        INFO("element " << k << ": flat " << flat[k] << ", hierarchical " << hier[k] << ", exact " << exact);
        REQUIRE(std::abs(static_cast<double>(hier[k]) - exact) <= gamma * magnitude * (1 + 1e-9));
        REQUIRE(std::abs(static_cast<double>(hier[k]) - static_cast<double>(flat[k])) <= 2 * gamma * magnitude * (1 + 1e-9));
      }

      // Traffic: J reduce-scatters of c out over the L ranks of the node, none of it off the node; one of c
      // over the J nodes, all of it off the node. Summed over a node's L ranks, L*(J-1)*c = (J-1)/J of
      // the p*c input leaves the node, against (p-1)/p of it for the flat ring.
      const std::uint64_t elem = sizeof(T);
      const Traffic traffic = mpi.collectives.take_traffic();
      const TrafficCounters& inter = of(traffic, mics::topology::GroupKind::inter_node);
      const TrafficCounters& intra = of(traffic, mics::topology::GroupKind::intra_node);
      CHECK(intra.collectives == static_cast<std::uint64_t>(J));
      CHECK(intra.bytes_sent == static_cast<std::uint64_t>(J) * static_cast<std::uint64_t>(L - 1) * c * elem);
      CHECK(intra.bytes_sent_off_node == 0);
      CHECK(inter.collectives == 1);
      CHECK(inter.bytes_sent == static_cast<std::uint64_t>(J - 1) * c * elem);
      CHECK(inter.bytes_received == inter.bytes_sent);
      CHECK(inter.bytes_sent_off_node == inter.bytes_sent);
      CHECK(of(traffic, mics::topology::GroupKind::partition).collectives == 0);
      std::uint64_t hier_egress = 0, flat_egress = 0;
      MPI_Allreduce(&inter.bytes_sent_off_node, &hier_egress, 1, MPI_UINT64_T, MPI_SUM, topo.node().handle());
      mpi.collectives.reduce_scatter<T>(noisy, flat, ReduceOp::sum, topo.partition()).wait();
      const TrafficCounters flat_partition = of(mpi.collectives.take_traffic(), mics::topology::GroupKind::partition);
      MPI_Allreduce(&flat_partition.bytes_sent_off_node, &flat_egress, 1, MPI_UINT64_T, MPI_SUM, topo.node().handle());
      const std::uint64_t M = n * elem;
      CHECK(hier_egress * static_cast<std::uint64_t>(J) == M * static_cast<std::uint64_t>(J - 1));
      CHECK(flat_egress * static_cast<std::uint64_t>(p) == M * static_cast<std::uint64_t>(p - 1));
      if (L > 1) CHECK(hier_egress < flat_egress);

      // Non-blocking: progress() alone moves both stages along; an average divides by p once.
      std::vector<T> average(c);
      Request request = mpi.collectives.hierarchical_reduce_scatter<T>(integers, average, ReduceOp::average,
                                                                       topo.inter_node(), topo.intra_node());
      for (int turns = 0; turns < 10000000 && !request.test(); ++turns) mpi.collectives.progress();
      CHECK(request.done());
      for (std::size_t k = 0; k < c; ++k)
        REQUIRE(average[k] == static_cast<T>((p + 1) / 2.0 * static_cast<int>((static_cast<std::size_t>(q) * c + k) % 5 + 1)));

      // The engine's group object takes the hierarchical path when the plan says so, the flat one when not.
      mics::config::ParallelOptions options;
      options.partition_size = p;
      const auto plan = mics::topology::make_plan(options, 1, 1, world, rpn);
      REQUIRE(plan.hierarchical);
      MicsGroups groups(mpi.collectives, topo, plan);
      std::vector<float> full_f(n), via_groups(c);
      for (std::size_t e = 0; e < n; ++e) full_f[e] = static_cast<float>(noise(q, e));
      (void)mpi.collectives.take_traffic();
      groups.reduce_scatter(full_f, via_groups).wait();
      CHECK(of(mpi.collectives.take_traffic(), mics::topology::GroupKind::inter_node).collectives == 1);
      options.hierarchical = mics::config::Switch::off;
      MicsGroups flat_groups(mpi.collectives, topo, mics::topology::make_plan(options, 1, 1, world, rpn));
      flat_groups.reduce_scatter(full_f, via_groups).wait();
      CHECK(of(mpi.collectives.take_traffic(), mics::topology::GroupKind::inter_node).collectives == 0);
    }
  }
}

TEMPLATE_TEST_CASE("flat all-gather places shard i at i*c and counts (n-1)*c elements", "[comm][mpi]", float, bf16,
                   std::int32_t, std::int64_t, double) {
  using T = TestType;
  Mpi mpi;
  Topology topo = topology(1, 0);  // one rank per emulated node: every ring hop is off-node
  const auto& world = topo.world();
  const int n = world.size();
  for (std::size_t c : {std::size_t{1}, std::size_t{3}, std::size_t{1001}}) {
    std::vector<T> shard(c), full(c * static_cast<std::size_t>(n)), again(full.size());
    for (std::size_t k = 0; k < c; ++k) shard[k] = make<T>(world.rank() * 10000.0 + static_cast<double>(k));
    (void)mpi.collectives.take_traffic();
    mpi.collectives.all_gather<T>(shard, full, world).wait();
    for (int i = 0; i < n; ++i) {
      for (std::size_t k = 0; k < c; ++k) {
        REQUIRE(full[static_cast<std::size_t>(i) * c + k] == make<T>(i * 10000.0 + static_cast<double>(k)));
      }
    }
    Request request = mpi.collectives.all_gather<T>(shard, again, world);
    while (!request.test()) {
    }
    CHECK(same_bits(full, again));
    const TrafficCounters t = of(mpi.collectives.take_traffic(), mics::topology::GroupKind::world);
    CHECK(t.collectives == 2);
    CHECK(t.bytes_sent == 2 * static_cast<std::uint64_t>(n - 1) * c * sizeof(T));
    CHECK(t.bytes_received == t.bytes_sent);
    CHECK(t.bytes_sent_off_node == (n > 1 ? t.bytes_sent : 0));
    CHECK(t.participants == n);
    CHECK(of(mpi.collectives.take_traffic(), mics::topology::GroupKind::world).bytes_sent == 0);  // taken
  }
  std::vector<T> shard(2), wrong(3);
  CHECK_THROWS_AS(mpi.collectives.all_gather<T>(shard, wrong, world), mics::InternalError);
}

TEMPLATE_TEST_CASE("reduce-scatter sums and averages integer-valued data exactly", "[comm][mpi]", float, bf16,
                   double) {
  using T = TestType;
  Mpi mpi;
  const int world = mics::test::world_size();
  for (int p = 1; p <= world; ++p) {
    if (world % p != 0) continue;
    Topology topo = topology(1, p);
    for (const mics::topology::Group* group : {&topo.partition(), &topo.replication(), &topo.world()}) {
      const int m = group->size();
      const int r = group->rank();
      const std::size_t c = 37;
      // Rank r holds (r+1)*(e%7+1): the sum over m ranks is m(m+1)/2*(e%7+1) <= 36*7 = 252, an integer
      // exact in bf16 (8 significant bits), and the average (m+1)/2*(e%7+1) is a short binary fraction.
      std::vector<T> full(c * static_cast<std::size_t>(m));
      for (std::size_t e = 0; e < full.size(); ++e) full[e] = make<T>((r + 1.0) * static_cast<double>(e % 7 + 1));
      std::vector<T> sum(c), average(c);
      (void)mpi.collectives.take_traffic();
      mpi.collectives.reduce_scatter<T>(full, sum, ReduceOp::sum, *group).wait();
      Request request = mpi.collectives.reduce_scatter<T>(full, average, ReduceOp::average, *group);
      while (!request.test()) mpi.collectives.progress();
      for (std::size_t k = 0; k < c; ++k) {
        const double x = static_cast<double>((static_cast<std::size_t>(r) * c + k) % 7 + 1);
        REQUIRE(sum[k] == make<T>(m * (m + 1) / 2.0 * x));
        REQUIRE(average[k] == make<T>((m + 1) / 2.0 * x));
      }
      const TrafficCounters t = of(mpi.collectives.take_traffic(), group->kind());
      CHECK(t.collectives == 2);
      CHECK(t.bytes_sent == 2 * static_cast<std::uint64_t>(m - 1) * c * sizeof(T));
      CHECK(t.bytes_received == t.bytes_sent);
    }
  }
}

TEMPLATE_TEST_CASE("all-reduce sum, average and max are exact on integer-valued data, on both channels",
                   "[comm][mpi]", float, bf16, double, std::int32_t, std::int64_t) {
  using T = TestType;
  constexpr bool floating = !std::is_integral_v<T>;
  Mpi mpi;
  Topology topo = topology(1, 0);
  const auto& world = topo.world();
  const int m = world.size();
  const int r = world.rank();
  const std::size_t count = 1001;
  std::vector<T> in(count);
  for (std::size_t e = 0; e < count; ++e) in[e] = make<T>((r + 1.0) * static_cast<double>(e % 7 + 1));
  std::vector<T> sum = in, maximum = in, host_sum = in, average = in;
  (void)mpi.collectives.take_traffic();
  mpi.collectives.all_reduce<T>(std::span<T>(sum), ReduceOp::sum, world).wait();
  Request request = mpi.collectives.all_reduce<T>(std::span<T>(maximum), ReduceOp::max, world);
  while (!request.test()) {
  }
  mpi.collectives.host_all_reduce<T>(std::span<T>(host_sum), ReduceOp::sum, world);
  if constexpr (floating) {
    mpi.collectives.all_reduce<T>(std::span<T>(average), ReduceOp::average, world).wait();
  } else {
    CHECK_THROWS_AS(mpi.collectives.all_reduce<T>(std::span<T>(average), ReduceOp::average, world),
                    mics::InternalError);
  }
  for (std::size_t e = 0; e < count; ++e) {
    const double x = static_cast<double>(e % 7 + 1);
    REQUIRE(sum[e] == make<T>(m * (m + 1) / 2.0 * x));
    REQUIRE(host_sum[e] == sum[e]);
    REQUIRE(maximum[e] == make<T>(m * x));
    if constexpr (floating) REQUIRE(average[e] == make<T>((m + 1) / 2.0 * x));
  }
  // A ring all-reduce is a reduce-scatter then an all-gather of N/m elements each: 2(m-1)N/m per rank.
  const TrafficCounters t = of(mpi.collectives.take_traffic(), mics::topology::GroupKind::world);
  const std::uint64_t per_call = 2 * static_cast<std::uint64_t>(m - 1) * count * sizeof(T) / static_cast<std::uint64_t>(m);
  CHECK(t.collectives == (floating ? 4u : 3u));  // a refused average moves nothing
  CHECK(t.bytes_sent == (floating ? 4 : 3) * per_call);
  CHECK(t.bytes_received == t.bytes_sent);
}

TEST_CASE("broadcast and barrier: the root sends, the others receive", "[comm][mpi]") {
  Mpi mpi;
  Topology topo = topology(1, 0);
  const auto& world = topo.world();
  const int root = world.size() - 1;
  std::vector<double> data(5, world.rank() == root ? 2.5 : 0.0);
  (void)mpi.collectives.take_traffic();
  mpi.collectives.broadcast<double>(data, root, world).wait();
  for (double x : data) CHECK(x == 2.5);
  std::vector<std::int64_t> ids(3, world.rank() == 0 ? 42 : -1);
  Request request = mpi.collectives.broadcast<std::int64_t>(ids, 0, world);
  while (!request.test()) mpi.collectives.progress();
  for (std::int64_t x : ids) CHECK(x == 42);
  mpi.collectives.barrier(world);
  const TrafficCounters t = of(mpi.collectives.take_traffic(), mics::topology::GroupKind::world);
  const std::uint64_t bcast_bytes = world.size() > 1 ? 5 * 8 : 0;
  const std::uint64_t ids_bytes = world.size() > 1 ? 3 * 8 : 0;
  CHECK(t.collectives == 3);
  CHECK(t.bytes_sent == (world.rank() == root ? bcast_bytes : 0) + (world.rank() == 0 ? ids_bytes : 0));
  CHECK(t.bytes_received == (world.rank() == root ? 0 : bcast_bytes) + (world.rank() == 0 ? 0 : ids_bytes));
}

TEST_CASE("two-hop gradient synchronization through MicsGroups", "[comm][mpi]") {
  Mpi mpi;
  const int world = mics::test::world_size();
  for (int p = 1; p <= world; ++p) {
    if (world % p != 0) continue;
    Topology topo = topology(1, p);
    mics::config::ParallelOptions options;
    options.partition_size = p;
    options.hierarchical = mics::config::Switch::off;
    const auto plan = mics::topology::make_plan(options, 1, 1, world, 1);
    MicsGroups groups(mpi.collectives, topo, plan);
    CHECK_FALSE(groups.hierarchical());
    const std::size_t c = 16;
    // Rank g*p + q holds (g+1) everywhere: the reduce-scatter gives p*(g+1) on every element of a shard,
    // the sum over the r replicas p * r(r+1)/2, whatever shard.
    const int g = topo.placement().partition_group;
    const int r = topo.shape().replicas;
    std::vector<float> grads(c * static_cast<std::size_t>(p), static_cast<float>(g + 1)), shard(c);
    groups.reduce_scatter(grads, shard).wait();
    for (float x : shard) REQUIRE(x == static_cast<float>(p * (g + 1)));
    groups.sum_over_replicas(shard).wait();
    for (float x : shard) REQUIRE(x == static_cast<float>(p * r * (r + 1) / 2));
    std::vector<double> norm{static_cast<double>(topo.placement().partition_rank)};
    groups.sum_over_partition(norm);
    CHECK(norm[0] == p * (p - 1) / 2.0);
  }
}

TEST_CASE("a Request is move-only and waits when replaced", "[comm][mpi]") {
  Mpi mpi;
  Topology topo = topology(1, 0);
  Request empty;
  CHECK(empty.done());
  CHECK(empty.test());
  std::vector<std::int32_t> value{topo.world().rank() == 0 ? 7 : 0};
  Request first = mpi.collectives.broadcast<std::int32_t>(value, 0, topo.world());
  Request moved = std::move(first);
  CHECK(first.done());
  moved = Request();  // assignment finishes the broadcast it held
  CHECK(value[0] == 7);
}
