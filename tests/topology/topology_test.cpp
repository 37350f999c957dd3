// MiCS groups: the pure shape validator against a brute-force definition of "groups never straddle a
// node", its messages, the described group map, and the real communicators' membership.
#include <mpi.h>

#include <algorithm>
#include "catch.hpp"
#include <set>
#include <string>
#include <vector>

#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"
#include "mpi_world.hpp"

using mics::topology::Shape;
using mics::topology::Topology;
using mics::topology::validate_shape;

namespace {


// Valid iff every partition group lies inside one node or covers each node it touches completely.
bool layout_valid(int world, int rpn, int p) {
  if (world % rpn != 0 || p > world || world % p != 0) return false;
  for (int first = 0; first < world; first += p) {
    std::set<int> nodes;
    for (int rank = first; rank < first + p; ++rank) nodes.insert(rank / rpn);
    if (nodes.size() == 1) continue;
    for (int node : nodes) {
      if (node * rpn < first || (node + 1) * rpn > first + p) return false;
    }
  }
  return true;
}

std::string error_of(int world, int rpn, int p) {
  try {
    validate_shape(world, rpn, p);
  } catch (const mics::Error& e) {
    return e.what();
  }
  return "";
}

// World ranks of the members of `comm`, in the communicator's rank order.
std::vector<int> members_of(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<int> members(static_cast<std::size_t>(size));
  const int me = mics::test::world_rank();
  MPI_Allgather(&me, 1, MPI_INT, members.data(), 1, MPI_INT, comm);
  return members;
}

// The world ranks satisfying `same` with this rank, ascending.
template <class Pred>
std::vector<int> expected_members(int world, Pred same) {
  std::vector<int> out;
  for (int rank = 0; rank < world; ++rank) {
    if (same(rank)) out.push_back(rank);
  }
  return out;
}

}  // namespace

TEST_CASE("validate_shape accepts exactly the layouts whose groups never straddle a node", "[topology]") {
  for (int world = 1; world <= 8; ++world) {
    for (int rpn = 1; rpn <= 8; ++rpn) {
      for (int p_option = 0; p_option <= 9; ++p_option) {
        const int p = p_option == 0 ? rpn : p_option;
        const bool valid = layout_valid(world, rpn, p);
        INFO("world " << world << " rpn " << rpn << " p option " << p_option);
        if (!valid) {
          CHECK_THROWS_AS(validate_shape(world, rpn, p_option), mics::Error);
          continue;
        }
        const Shape s = validate_shape(world, rpn, p_option);
        CHECK(s.world == world);
        CHECK(s.partition_size == p);
        CHECK(s.replicas * p == world);
        CHECK(s.nodes * rpn == world);
        // J = nodes the first partition group touches; L = its ranks per node.
        std::set<int> nodes;
        for (int rank = 0; rank < p; ++rank) nodes.insert(rank / rpn);
        CHECK(s.nodes_per_partition == static_cast<int>(nodes.size()));
        CHECK(s.ranks_per_node_in_partition * s.nodes_per_partition == p);
        CHECK(s.spans_nodes() == (p > rpn));
      }
    }
  }
}

TEST_CASE("invalid shapes name their numbers", "[topology]") {
  CHECK_THAT(error_of(6, 4, 2), Catch::Contains("world size 6 is not divisible by topology.ranks_per_node = 4"));
  CHECK_THAT(error_of(4, 2, 8), Catch::Contains("parallel.partition_size = 8 is larger than the world size 4"));
  CHECK_THAT(error_of(8, 2, 6), Catch::Contains("world size 8 is not divisible by parallel.partition_size = 6"));
  CHECK_THAT(error_of(12, 4, 6), Catch::Contains("parallel.partition_size = 6 spans nodes of 4 ranks"));
  CHECK_THAT(error_of(12, 4, 6), Catch::Contains("whole nodes"));
  CHECK_THAT(error_of(12, 6, 4), Catch::Contains("parallel.partition_size = 4 does not divide topology.ranks_per_node = 6"));
  CHECK_THAT(error_of(4, 0, 2), Catch::Contains("topology.ranks_per_node = 0"));
  CHECK_THAT(error_of(4, 2, -1), Catch::Contains("parallel.partition_size = -1"));
}

TEST_CASE("SLURM_NTASKS must match the MPI world", "[topology]") {
  CHECK_NOTHROW(mics::topology::check_slurm_world(4, nullptr));
  CHECK_NOTHROW(mics::topology::check_slurm_world(4, "4"));
  try {
    mics::topology::check_slurm_world(1, "8");
    FAIL("a singleton under an 8-task Slurm step must be rejected");
  } catch (const mics::Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("SLURM_NTASKS=8"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("1 rank(s)"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("srun --mpi=pmix"));
  }
}

TEST_CASE("describe lists the group map", "[topology]") {
  const std::string small = mics::topology::describe_shape(validate_shape(4, 2, 2));
  CHECK_THAT(small, Catch::Contains("partition groups: [0-1] [2-3]"));
  CHECK_THAT(small, Catch::Contains("replication groups: {0,2} {1,3}"));
  CHECK_THAT(small, !Catch::Contains("intra-node"));

  const std::string spanning = mics::topology::describe_shape(validate_shape(8, 4, 8));
  CHECK_THAT(spanning, Catch::Contains("J=2"));
  CHECK_THAT(spanning, Catch::Contains("L=4"));
  CHECK_THAT(spanning, Catch::Contains("partition groups: [0-7]"));
  CHECK_THAT(spanning, Catch::Contains("intra-node groups: [0-3] [4-7]"));
  CHECK_THAT(spanning, Catch::Contains("inter-node groups: {0,4} {1,5} {2,6} {3,7}"));

  const std::string many = mics::topology::describe_shape(validate_shape(64, 2, 2));
  CHECK_THAT(many, Catch::Contains("partition groups: [0-1] [2-3] [4-5] ... [60-61] [62-63] (32 groups)"));
  CHECK_THAT(many, Catch::Contains("replication groups: {0,2,4,...,62} {1,3,5,...,63}"));
}

TEST_CASE("communicators hold the ranks MiCS puts in each group", "[topology][mpi]") {
  const int world = mics::test::world_size();
  const int me = mics::test::world_rank();
  for (int rpn = 1; rpn <= world; ++rpn) {
    if (world % rpn != 0) continue;
    for (int p = 1; p <= world; ++p) {
      if (!layout_valid(world, rpn, p)) continue;
      INFO("world " << world << " ranks_per_node " << rpn << " p " << p);
      Topology t = mics::test::topology(rpn, p);
      const Shape& s = t.shape();
      const int L = s.ranks_per_node_in_partition;
      CHECK(members_of(t.world().handle()) == expected_members(world, [](int) { return true; }));
      CHECK(members_of(t.node().handle()) == expected_members(world, [&](int r) { return r / rpn == me / rpn; }));
      CHECK(members_of(t.partition().handle()) == expected_members(world, [&](int r) { return r / p == me / p; }));
      CHECK(members_of(t.replication().handle()) ==
            expected_members(world, [&](int r) { return r % p == me % p; }));
      CHECK(t.partition().rank() == me % p);
      CHECK(t.replication().rank() == me / p);
      CHECK(t.placement().partition_rank == me % p);
      CHECK(t.placement().node == me / rpn);
      REQUIRE(t.intra_node().valid() == (p > rpn));
      if (p > rpn) {
        // Intra: same partition group, same node. Inter: same partition group, same rank on its node.
        CHECK(members_of(t.intra_node().handle()) ==
              expected_members(world, [&](int r) { return r / p == me / p && r / rpn == me / rpn; }));
        CHECK(members_of(t.inter_node().handle()) ==
              expected_members(world, [&](int r) { return r / p == me / p && r % rpn == me % rpn; }));
        CHECK(t.intra_node().size() == L);
        CHECK(t.inter_node().size() == s.nodes_per_partition);
        CHECK(t.inter_node().ring_next_off_node());
        CHECK_FALSE(t.intra_node().ring_next_off_node());
      }
      // The ring neighbour of the partition group is off-node iff the next member's node differs.
      const int next_in_partition = (me / p) * p + (me % p + 1) % p;
      CHECK(t.partition().ring_next_off_node() == (next_in_partition / rpn != me / rpn));
    }
  }
}

TEST_CASE("detected nodes: every rank of this host shares one node", "[topology][mpi]") {
  const int rpn = mics::topology::detect_ranks_per_node(MPI_COMM_WORLD);
  Topology t = Topology::create(validate_shape(mics::test::world_size(), rpn, 0));
  CHECK(t.shape().ranks_per_node == mics::test::world_size());
  CHECK(t.shape().partition_size == mics::test::world_size());
  CHECK(t.node().size() == mics::test::world_size());
  CHECK_FALSE(t.shape().spans_nodes());
  CHECK_THAT(t.describe(), Catch::Contains("partition groups:"));
}

TEST_CASE("an invalid layout is an input error naming the deck key", "[topology][mpi]") {
  const int world = mics::test::world_size();
  try {
    mics::test::topology(world + 1, 0);
    FAIL("ranks_per_node larger than the world must be rejected");
  } catch (const mics::InputError& e) {
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("world size " + std::to_string(world) + " is not divisible by topology.ranks_per_node = " +
                               std::to_string(world + 1)));
  }
}

TEST_CASE("the parallel plan: strategies are partition sizes, hierarchy only where a group spans nodes",
          "[topology][plan]") {
  using mics::config::ParallelOptions;
  using mics::config::Strategy;
  using mics::config::Switch;
  using mics::topology::make_plan;
  ParallelOptions mics_options;  // mics, partition_size auto, hierarchical auto
  // 8 ranks as 4 nodes of 2: auto p = ranks per node, inside a node, flat.
  auto plan = make_plan(mics_options, 4, 2, 8, 2);
  CHECK(plan.shape.partition_size == 2);
  CHECK(plan.shape.replicas == 4);
  CHECK_FALSE(plan.hierarchical);
  CHECK(plan.global_batch() == 4 * 2 * 8);
  CHECK(plan.notes.empty());
  // p = 4 spans 2 nodes: hierarchical unless switched off.
  mics_options.partition_size = 4;
  CHECK(make_plan(mics_options, 1, 1, 8, 2).hierarchical);
  mics_options.hierarchical = Switch::off;
  CHECK_FALSE(make_plan(mics_options, 1, 1, 8, 2).hierarchical);
  mics_options.hierarchical = Switch::on;
  mics_options.partition_size = 2;
  plan = make_plan(mics_options, 1, 1, 8, 2);
  CHECK_FALSE(plan.hierarchical);
  REQUIRE(plan.notes.size() == 1);
  CHECK_THAT(plan.notes[0], Catch::Contains("parallel.hierarchical = on"));
  // zero3 is p = world, flat; ddp is p = 1; a partition_size given to them is noted, not used.
  ParallelOptions zero3;
  zero3.strategy = Strategy::zero3;
  zero3.partition_size = 2;
  zero3.partition_size_set = true;
  plan = make_plan(zero3, 1, 1, 8, 2);
  CHECK(plan.shape.partition_size == 8);
  CHECK_FALSE(plan.hierarchical);
  REQUIRE(plan.notes.size() == 1);
  CHECK_THAT(plan.notes[0], Catch::Contains("ignored by strategy zero3"));
  ParallelOptions ddp;
  ddp.strategy = Strategy::ddp;
  ddp.gather_dtype = mics::config::GatherDtype::bf16;
  plan = make_plan(ddp, 1, 1, 8, 2);
  CHECK(plan.shape.partition_size == 1);
  CHECK(plan.shape.replicas == 8);
  CHECK_FALSE(plan.sharded());
  CHECK_FALSE(plan.gather_bf16);  // nothing is gathered
  CHECK_THAT(plan.describe(), Catch::Contains("ddp p=1 r=8"));
  // Errors name the deck key and the value.
  ParallelOptions bad;
  bad.partition_size = 3;
  CHECK_THROWS_WITH(make_plan(bad, 1, 1, 8, 2), Catch::Contains("parallel.partition_size = 3"));
  CHECK_THROWS_AS(make_plan(bad, 1, 1, 8, 2), mics::InputError);
  CHECK_THROWS_WITH(make_plan(ParallelOptions{}, 0, 1, 8, 2), Catch::Contains("train.micro_batch = 0"));
  CHECK_THROWS_WITH(make_plan(ParallelOptions{}, 1, 0, 8, 2), Catch::Contains("train.grad_accum = 0"));
  CHECK_THROWS_WITH(make_plan(ParallelOptions{}, 1, 1, 6, 4), Catch::Contains("topology.ranks_per_node = 4"));
}
