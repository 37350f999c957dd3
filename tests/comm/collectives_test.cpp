// Typed collectives over MiCS groups: hierarchical all-gather bit-identical to the flat one, exact
// reductions on integer-valued data, non-blocking handles, and the analytic traffic counters.
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
#include "mics/topology/topology.hpp"
#include "mpi_world.hpp"

using mics::bf16;
using namespace mics::comm;
using mics::topology::Topology;

namespace {


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
  MpiCollectives mpi;
  const int world = mics::test::world_size();
  for (auto [rpn, p] : spanning_layouts(world)) {
    Topology topo = Topology::create({rpn, p});
    const int J = topo.shape().nodes_per_partition;
    const int L = topo.shape().ranks_per_node_in_partition;
    const int q = topo.placement().partition_rank;
    for (std::size_t c : {std::size_t{1}, std::size_t{3}, std::size_t{1001}}) {
      INFO("ranks_per_node " << rpn << " p " << p << " J " << J << " L " << L << " c " << c);
      std::vector<T> shard(c);
      for (std::size_t k = 0; k < c; ++k) shard[k] = make<T>(shard_value(q, k));
      std::vector<T> flat(c * static_cast<std::size_t>(p)), hier(flat.size()), ihier(flat.size());
      all_gather<T>(mpi, shard, flat, topo.partition());
      topo.reset_counters();
      hierarchical_all_gather<T>(mpi, shard, hier, topo.inter_node(), topo.intra_node());
      CHECK(same_bits(flat, hier));
      for (int i = 0; i < p; ++i) {
        for (std::size_t k = 0; k < c; ++k) {
          REQUIRE(flat[static_cast<std::size_t>(i) * c + k] == make<T>(shard_value(i, k)));
        }
      }
      // Counters: (J-1)*c inter-node, all sent off-node; (L-1)*J*c intra-node, none off-node.
      const std::uint64_t elem = sizeof(T);
      const TrafficCounters inter = topo.inter_node().take_counters();
      const TrafficCounters intra = topo.intra_node().take_counters();
      CHECK(inter.collectives == 1);
      CHECK(inter.bytes_sent == static_cast<std::uint64_t>(J - 1) * c * elem);
      CHECK(inter.bytes_received == inter.bytes_sent);
      CHECK(inter.bytes_sent_off_node == inter.bytes_sent);
      CHECK(intra.bytes_sent == static_cast<std::uint64_t>(L - 1) * static_cast<std::uint64_t>(J) * c * elem);
      CHECK(intra.bytes_sent_off_node == 0);
      CHECK(topo.partition().counters().collectives == 0);

      // Non-blocking: poll test() until both stages are done.
      Request request = ihierarchical_all_gather<T>(mpi, shard, ihier, topo.inter_node(), topo.intra_node());
      while (!request.test()) {
      }
      CHECK(request.done());
      CHECK(same_bits(flat, ihier));

      // The engine's group object picks the hierarchical path by flag.
      PartitionGroup group(mpi, topo, true);
      CHECK(group.hierarchical());
      std::vector<T> via_group(flat.size());
      group.all_gather<T>(shard, via_group);
      CHECK(same_bits(flat, via_group));
      std::vector<T> via_group_async(flat.size());
      group.iall_gather<T>(shard, via_group_async).wait();
      CHECK(same_bits(flat, via_group_async));
    }
  }
}

TEMPLATE_TEST_CASE("flat all-gather places shard i at i*c and counts (n-1)*c elements", "[comm][mpi]", float, bf16,
                   std::int32_t, std::int64_t, double) {
  using T = TestType;
  MpiCollectives mpi;
  Topology topo = Topology::create({1, 0});  // one rank per emulated node: every ring hop is off-node
  Communicator& world = topo.world();
  const int n = world.size();
  for (std::size_t c : {std::size_t{1}, std::size_t{3}, std::size_t{1001}}) {
    std::vector<T> shard(c), full(c * static_cast<std::size_t>(n)), async_full(full.size());
    for (std::size_t k = 0; k < c; ++k) shard[k] = make<T>(world.rank() * 10000.0 + static_cast<double>(k));
    world.reset_counters();
    all_gather<T>(mpi, shard, full, world);
    for (int i = 0; i < n; ++i) {
      for (std::size_t k = 0; k < c; ++k) {
        REQUIRE(full[static_cast<std::size_t>(i) * c + k] == make<T>(i * 10000.0 + static_cast<double>(k)));
      }
    }
    Request request = iall_gather<T>(mpi, shard, async_full, world);
    request.wait();
    CHECK(same_bits(full, async_full));
    const TrafficCounters t = world.take_counters();
    CHECK(t.collectives == 2);
    CHECK(t.bytes_sent == 2 * static_cast<std::uint64_t>(n - 1) * c * sizeof(T));
    CHECK(t.bytes_received == t.bytes_sent);
    CHECK(t.bytes_sent_off_node == (n > 1 ? t.bytes_sent : 0));
    CHECK(t.participants == n);
    CHECK(world.counters().bytes_sent == 0);  // take_counters reset them
  }
  std::vector<T> shard(2), wrong(3);
  CHECK_THROWS_AS(all_gather<T>(mpi, shard, wrong, world), mics::Error);
}

TEMPLATE_TEST_CASE("reduce-scatter sums and averages integer-valued data exactly", "[comm][mpi]", float, bf16,
                   double) {
  using T = TestType;
  MpiCollectives mpi;
  const int world = mics::test::world_size();
  for (int p = 1; p <= world; ++p) {
    if (world % p != 0) continue;
    Topology topo = Topology::create({1, p});
    for (Communicator* comm : {&topo.partition(), &topo.replication(), &topo.world()}) {
      const int m = comm->size();
      const int r = comm->rank();
      const std::size_t c = 37;
      // Rank r holds (r+1)*(e%7+1): the sum over m ranks is m(m+1)/2*(e%7+1) <= 36*7 = 252, an integer
      // exact in bf16 (8 significant bits), and the average (m+1)/2*(e%7+1) is a short binary fraction.
      std::vector<T> full(c * static_cast<std::size_t>(m));
      for (std::size_t e = 0; e < full.size(); ++e) full[e] = make<T>((r + 1.0) * static_cast<double>(e % 7 + 1));
      std::vector<T> sum(c), average(c), async_average(c);
      comm->reset_counters();
      reduce_scatter<T>(mpi, full, sum, ReduceOp::sum, *comm);
      reduce_scatter<T>(mpi, full, average, ReduceOp::average, *comm);
      Request request = ireduce_scatter<T>(mpi, full, async_average, ReduceOp::average, *comm);
      request.wait();
      for (std::size_t k = 0; k < c; ++k) {
        const double x = static_cast<double>((static_cast<std::size_t>(r) * c + k) % 7 + 1);
        REQUIRE(sum[k] == make<T>(m * (m + 1) / 2.0 * x));
        REQUIRE(average[k] == make<T>((m + 1) / 2.0 * x));
        REQUIRE(async_average[k] == average[k]);
      }
      const TrafficCounters t = comm->take_counters();
      CHECK(t.collectives == 3);
      CHECK(t.bytes_sent == 3 * static_cast<std::uint64_t>(m - 1) * c * sizeof(T));
      CHECK(t.bytes_received == t.bytes_sent);
    }
  }
}

TEMPLATE_TEST_CASE("all-reduce sum, average and max are exact on integer-valued data", "[comm][mpi]", float, bf16,
                   double, std::int32_t, std::int64_t) {
  using T = TestType;
  constexpr bool floating = !std::is_integral_v<T>;
  MpiCollectives mpi;
  Topology topo = Topology::create({1, 0});
  Communicator& world = topo.world();
  const int m = world.size();
  const int r = world.rank();
  const std::size_t count = 1001;
  std::vector<T> in(count);
  for (std::size_t e = 0; e < count; ++e) in[e] = make<T>((r + 1.0) * static_cast<double>(e % 7 + 1));
  std::vector<T> sum(count), maximum(count), average(count), async_max = in;
  world.reset_counters();
  all_reduce<T>(mpi, in, sum, ReduceOp::sum, world);
  all_reduce<T>(mpi, in, maximum, ReduceOp::max, world);
  Request request = iall_reduce<T>(mpi, std::span<T>(async_max), ReduceOp::max, world);  // in place
  while (!request.test()) {
  }
  if constexpr (floating) {
    average = in;
    all_reduce<T>(mpi, std::span<T>(average), ReduceOp::average, world);
  } else {
    CHECK_THROWS_AS(all_reduce<T>(mpi, std::span<T>(average), ReduceOp::average, world), mics::Error);
  }
  for (std::size_t e = 0; e < count; ++e) {
    const double x = static_cast<double>(e % 7 + 1);
    REQUIRE(sum[e] == make<T>(m * (m + 1) / 2.0 * x));
    REQUIRE(maximum[e] == make<T>(m * x));
    REQUIRE(async_max[e] == maximum[e]);
    if constexpr (floating) REQUIRE(average[e] == make<T>((m + 1) / 2.0 * x));
  }
  const TrafficCounters t = world.take_counters();
  const std::uint64_t per_call = 2 * static_cast<std::uint64_t>(m - 1) * count * sizeof(T) / static_cast<std::uint64_t>(m);
  CHECK(t.collectives == (floating ? 4u : 3u));
  CHECK(t.bytes_sent == (floating ? 4 : 3) * per_call);
  CHECK(t.bytes_received == t.bytes_sent);
}

TEST_CASE("broadcast and barrier: blocking, non-blocking and their counters", "[comm][mpi]") {
  MpiCollectives mpi;
  Topology topo = Topology::create({1, 0});
  Communicator& world = topo.world();
  const int root = world.size() - 1;
  std::vector<double> data(5, world.rank() == root ? 2.5 : 0.0);
  world.reset_counters();
  broadcast<double>(mpi, data, root, world);
  for (double x : data) CHECK(x == 2.5);
  std::vector<std::int64_t> ids(3, world.rank() == 0 ? 42 : -1);
  Request request = ibroadcast<std::int64_t>(mpi, ids, 0, world);
  request.wait();
  for (std::int64_t x : ids) CHECK(x == 42);
  mpi.barrier(world);
  Request barrier = mpi.ibarrier(world);
  barrier.wait();
  const TrafficCounters t = world.take_counters();
  const std::uint64_t bcast_bytes = world.size() > 1 ? 5 * 8 : 0;
  const std::uint64_t ids_bytes = world.size() > 1 ? 3 * 8 : 0;
  CHECK(t.collectives == 4);
  CHECK(t.bytes_sent == (world.rank() == root ? bcast_bytes : 0) + (world.rank() == 0 ? ids_bytes : 0));
  CHECK(t.bytes_received == (world.rank() == root ? 0 : bcast_bytes) + (world.rank() == 0 ? 0 : ids_bytes));
}

TEST_CASE("two-hop gradient synchronization through the PartitionGroup", "[comm][mpi]") {
  MpiCollectives mpi;
  const int world = mics::test::world_size();
  for (int p = 1; p <= world; ++p) {
    if (world % p != 0) continue;
    Topology topo = Topology::create({1, p});
    PartitionGroup group(mpi, topo, false);
    CHECK_FALSE(group.hierarchical());
    const std::size_t c = 16;
    // Every rank's full gradient is all ones: reduce-scatter average then replica average gives ones.
    std::vector<float> grads(c * static_cast<std::size_t>(p), 1.0f), shard(c);
    group.reduce_scatter<float>(grads, shard, ReduceOp::average);
    group.iall_reduce_replicas<float>(shard, ReduceOp::average).wait();
    for (float x : shard) CHECK(x == 1.0f);
    std::vector<float> norm{static_cast<float>(group.rank())};
    group.all_reduce_partition<float>(norm, ReduceOp::max);
    CHECK(norm[0] == static_cast<float>(p - 1));
  }
}

TEST_CASE("a Request is move-only and waits when replaced", "[comm][mpi]") {
  MpiCollectives mpi;
  Topology topo = Topology::create({1, 0});
  Request empty;
  CHECK(empty.done());
  CHECK(empty.test());
  std::vector<std::int32_t> value{topo.world().rank() == 0 ? 7 : 0};
  Request first = ibroadcast<std::int32_t>(mpi, value, 0, topo.world());
  Request moved = std::move(first);
  CHECK(first.done());
  moved = Request();  // assignment finishes the broadcast it held
  CHECK(value[0] == 7);
}
