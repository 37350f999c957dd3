// MiCS process groups (docs/algorithms.md#groups): n ranks in r = n / p partition groups of p consecutive ranks
// (model states sharded inside), replication groups of the ranks holding the same shard, and, when a
// partition group spans J nodes of L ranks each, intra-node and inter-node sub-groups for the
// hierarchical all-gather and reduce-scatter. Ranks must be placed in blocks: node = rank / ranks_per_node.
#pragma once
#include <mpi.h>

#include <optional>
#include <string>

#include "mics/topology/group.hpp"

namespace mics::topology {

// The arithmetic of a valid layout.
struct Shape {
  int world = 0;           // n
  int ranks_per_node = 0;
  int nodes = 0;
  int partition_size = 0;  // p
  int replicas = 0;        // r = n / p
  int nodes_per_partition = 1;  // J: nodes one partition group spans (1 inside a node)
  int ranks_per_node_in_partition = 0;  // L = p / J
  bool spans_nodes() const { return nodes_per_partition > 1; }
};

// Ranks per node from MPI_Comm_split_type(SHARED); collective over `world`. Checks that every node has
// the same number of ranks, placed in consecutive blocks; throws the same mics::Error on every rank.
int detect_ranks_per_node(MPI_Comm world);

// Pure validation (no MPI): throws InputError naming the deck keys and numbers at fault.
// partition_size 0 means ranks_per_node.
Shape validate_shape(int world, int ranks_per_node, int partition_size);

// Under Slurm, SLURM_NTASKS must equal the MPI world size; a mismatch means every rank started as a
// singleton (ParallelCluster's MpiDefault=none). Throws mics::Error telling to use `srun --mpi=pmix`.
void check_slurm_world(int world_size);
// The same check on given values (slurm_ntasks: the variable's text, nullptr when unset).
void check_slurm_world(int world_size, const char* slurm_ntasks);

// Which groups this rank belongs to, as indices.
struct Placement {
  int world_rank = 0;
  int node = 0;               // world_rank / ranks_per_node
  int local_rank = 0;         // world_rank % ranks_per_node
  int partition_group = 0;    // g = world_rank / p
  int partition_rank = 0;     // q = world_rank % p (the shard this rank holds)
  int inter_node_index = 0;   // j = q / L (rank in the inter-node group)
  int intra_node_index = 0;   // l = q % L (rank in the intra-node group)
};

class Topology {
 public:
  // Collective over `world`, whose size must be shape.world: the groups of a validated shape (the plan's).
  static Topology create(const Shape& shape, MPI_Comm world = MPI_COMM_WORLD);

  const Shape& shape() const { return shape_; }
  const Placement& placement() const { return placement_; }

  const Group& world() const { return world_; }
  const Group& node() const { return node_; }
  const Group& partition() const { return partition_; }
  const Group& replication() const { return replication_; }
  // Only when the partition group spans nodes (shape().spans_nodes()); otherwise not valid().
  const Group& intra_node() const { return intra_node_; }
  const Group& inter_node() const { return inter_node_; }
  // The same members on communicators of their own, for the hierarchical reduce-scatter while the
  // hierarchical all-gather uses the two above. MPI matches the collectives of a communicator in the order
  // each rank starts them, and each of these operations starts its second stage only when a test or wait
  // sees the first one complete, which happens at different moments on different ranks: on shared
  // communicators a gather's second stage and a reduce-scatter's first could start in different orders.
  // Traffic is counted under the same kinds (intra_node, inter_node).
  const Group& intra_node_reduce() const { return intra_node_reduce_; }
  const Group& inter_node_reduce() const { return inter_node_reduce_; }

  // Compact multi-line summary: sizes and the group map.
  std::string describe() const;

 private:
  Topology() = default;

  Shape shape_;
  Placement placement_;
  Group world_;
  Group node_;
  Group partition_;
  Group replication_;
  Group intra_node_;
  Group intra_node_reduce_;
  Group inter_node_reduce_;
  Group inter_node_;
};

// The group map lines of describe(), from the shape alone (also used by tests):
//   "partition groups: [0-1] [2-3]", "replication groups: {0,2} {1,3}", ...
std::string describe_shape(const Shape& shape);

}  // namespace mics::topology
