#include "mics/topology/topology.hpp"

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "mics/util/error.hpp"

namespace mics::topology {

Shape validate_shape(int world, int ranks_per_node, int partition_size) {
  if (world < 1) throw InputError("world size " + std::to_string(world) + " must be at least 1");
  if (ranks_per_node < 1) {
    throw InputError("topology.ranks_per_node = " + std::to_string(ranks_per_node) + " must be at least 1");
  }
  if (partition_size < 0) {
    throw InputError("parallel.partition_size = " + std::to_string(partition_size) +
                     " must be auto (ranks per node) or positive");
  }
  if (world % ranks_per_node != 0) {
    throw InputError("world size " + std::to_string(world) + " is not divisible by topology.ranks_per_node = " +
                     std::to_string(ranks_per_node));
  }
  const int p = partition_size == 0 ? ranks_per_node : partition_size;
  const std::string p_text = "parallel.partition_size = " + std::to_string(p);
  if (p > world) throw InputError(p_text + " is larger than the world size " + std::to_string(world));
  if (world % p != 0) {
    throw InputError("world size " + std::to_string(world) + " is not divisible by " + p_text);
  }
  if (p > ranks_per_node && p % ranks_per_node != 0) {
    throw InputError(p_text + " spans nodes of " + std::to_string(ranks_per_node) +
                     " ranks but is not a multiple of them: a partition group must span whole nodes");
  }
  if (p < ranks_per_node && ranks_per_node % p != 0) {
    throw InputError(p_text + " does not divide topology.ranks_per_node = " + std::to_string(ranks_per_node) +
                     ": a partition group would straddle a node boundary");
  }
  Shape shape;
  shape.world = world;
  shape.ranks_per_node = ranks_per_node;
  shape.nodes = world / ranks_per_node;
  shape.partition_size = p;
  shape.replicas = world / p;
  shape.nodes_per_partition = p > ranks_per_node ? p / ranks_per_node : 1;
  shape.ranks_per_node_in_partition = p / shape.nodes_per_partition;
  return shape;
}

void check_slurm_world(int world_size, const char* slurm_ntasks) {
  if (slurm_ntasks == nullptr || *slurm_ntasks == '\0') return;
  char* end = nullptr;
  const long tasks = std::strtol(slurm_ntasks, &end, 10);
  if (*end != '\0' || tasks != world_size) {
    throw InputError("SLURM_NTASKS=" + std::string(slurm_ntasks) + " but the MPI world has " +
                std::to_string(world_size) +
                " rank(s): the tasks did not join one MPI job; launch with `srun --mpi=pmix`");
  }
}

void check_slurm_world(int world_size) { check_slurm_world(world_size, std::getenv("SLURM_NTASKS")); }

namespace {

// "[a-b]" for a consecutive range, "{a,b,c}" otherwise; long lists keep their ends.
std::string format_members(const std::vector<int>& members) {
  std::ostringstream os;
  bool consecutive = true;
  for (std::size_t i = 1; i < members.size(); ++i) consecutive &= members[i] == members[i - 1] + 1;
  if (members.size() == 1) {
    os << "{" << members[0] << "}";
  } else if (consecutive) {
    os << "[" << members.front() << "-" << members.back() << "]";
  } else {
    constexpr std::size_t kMaxListed = 8;
    os << "{";
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (members.size() > kMaxListed && i == 3) {
        os << ",...";
        i = members.size() - 1;
      }
      os << (i == 0 ? "" : ",") << members[i];
    }
    os << "}";
  }
  return os.str();
}

void describe_groups(std::ostringstream& os, const char* name, const std::vector<std::vector<int>>& groups) {
  constexpr std::size_t kMaxListed = 8;
  os << name << " groups:";
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (groups.size() > kMaxListed && g == 3) {
      os << " ...";
      g = groups.size() - 2;
    }
    os << " " << format_members(groups[g]);
  }
  if (groups.size() > kMaxListed) os << " (" << groups.size() << " groups)";
  os << "\n";
}

}  // namespace

std::string describe_shape(const Shape& s) {
  const int p = s.partition_size;
  const int L = s.ranks_per_node_in_partition;
  const int J = s.nodes_per_partition;
  std::ostringstream os;
  os << "world " << s.world << " ranks, " << s.nodes << " node(s) x " << s.ranks_per_node
     << " ranks per node\n";
  os << "partition size p=" << p << ", replicas r=" << s.replicas << ", partition spans J=" << J
     << " node(s) x L=" << L << " ranks\n";
  std::vector<std::vector<int>> partitions(static_cast<std::size_t>(s.replicas));
  std::vector<std::vector<int>> replications(static_cast<std::size_t>(p));
  for (int rank = 0; rank < s.world; ++rank) {
    partitions[static_cast<std::size_t>(rank / p)].push_back(rank);
    replications[static_cast<std::size_t>(rank % p)].push_back(rank);
  }
  describe_groups(os, "partition", partitions);
  describe_groups(os, "replication", replications);
  if (s.spans_nodes()) {
    std::vector<std::vector<int>> intra(static_cast<std::size_t>(s.world / L));
    std::vector<std::vector<int>> inter(static_cast<std::size_t>(s.replicas * L));
    for (int rank = 0; rank < s.world; ++rank) {
      const int g = rank / p, q = rank % p;
      intra[static_cast<std::size_t>(rank / L)].push_back(rank);
      inter[static_cast<std::size_t>(g * L + q % L)].push_back(rank);
    }
    describe_groups(os, "intra-node", intra);
    describe_groups(os, "inter-node", inter);
  }
  std::string text = os.str();
  text.pop_back();  // no trailing newline: callers log it as one record
  return text;
}

// Ranks per node from the shared-memory split; checks equal counts and block placement. The results of
// the checks are reduced so every rank throws the same error.
int detect_ranks_per_node(MPI_Comm world) {
  int world_rank = 0;
  MICS_MPI_CHECK(MPI_Comm_rank(world, &world_rank));
  MPI_Comm shared = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &shared));
  int local_rank = 0, local_size = 0;
  MICS_MPI_CHECK(MPI_Comm_rank(shared, &local_rank));
  MICS_MPI_CHECK(MPI_Comm_size(shared, &local_size));
  std::vector<int> members(static_cast<std::size_t>(local_size));
  MICS_MPI_CHECK(MPI_Allgather(&world_rank, 1, MPI_INT, members.data(), 1, MPI_INT, shared));
  MICS_MPI_CHECK(MPI_Comm_free(&shared));

  int sizes[2] = {-local_size, local_size};  // reduced with MAX: {-smallest, largest}
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, world));
  if (-sizes[0] != sizes[1]) {
    throw InputError("nodes have unequal rank counts (smallest " + std::to_string(-sizes[0]) + ", largest " +
                std::to_string(sizes[1]) + " ranks per node): start the same number of ranks on every node");
  }
  int misplaced = members.front() % local_size != 0;
  for (int i = 1; i < local_size; ++i) misplaced |= members[i] != members[0] + i;
  int first_misplaced = misplaced ? world_rank : -1;
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first_misplaced, 1, MPI_INT, MPI_MAX, world));
  if (first_misplaced >= 0) {
    throw InputError("ranks on a node are not consecutive (rank " + std::to_string(first_misplaced) +
                " shares a node with ranks that are not its block of " + std::to_string(local_size) +
                "): launch with block placement (mpirun --map-by slot, srun --distribution=block)");
  }
  return local_size;
}

namespace {

MPI_Comm split(MPI_Comm parent, int color, int key) {
  MPI_Comm out = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_split(parent, color, key, &out));
  return out;
}

}  // namespace

Topology Topology::create(const Shape& shape, MPI_Comm world) {
  int world_rank = 0, world_size = 0;
  MICS_MPI_CHECK(MPI_Comm_rank(world, &world_rank));
  MICS_MPI_CHECK(MPI_Comm_size(world, &world_size));
  MICS_CHECK(world_size == shape.world, "the shape was made for another world size");
  const int ranks_per_node = shape.ranks_per_node;

  Topology t;
  t.shape_ = shape;
  const Shape& s = t.shape_;
  const int p = s.partition_size;
  const int L = s.ranks_per_node_in_partition;
  Placement& at = t.placement_;
  at.world_rank = world_rank;
  at.node = world_rank / ranks_per_node;
  at.local_rank = world_rank % ranks_per_node;
  at.partition_group = world_rank / p;
  at.partition_rank = world_rank % p;
  at.inter_node_index = at.partition_rank / L;
  at.intra_node_index = at.partition_rank % L;

  MPI_Comm world_copy = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_dup(world, &world_copy));
  t.world_ = Group(world_copy, GroupKind::world, at.node);
  t.node_ = Group(split(world, at.node, world_rank), GroupKind::node, at.node);
  t.partition_ = Group(split(world, at.partition_group, at.partition_rank), GroupKind::partition, at.node);
  t.replication_ = Group(split(world, at.partition_rank, at.partition_group), GroupKind::replication, at.node);
  if (s.spans_nodes()) {
    t.intra_node_ = Group(split(world, world_rank / L, world_rank), GroupKind::intra_node, at.node);
    t.inter_node_ = Group(split(world, at.partition_group * L + at.intra_node_index, at.inter_node_index),
                          GroupKind::inter_node, at.node);
    MPI_Comm intra_copy = MPI_COMM_NULL, inter_copy = MPI_COMM_NULL;
    MICS_MPI_CHECK(MPI_Comm_dup(t.intra_node_.handle(), &intra_copy));
    t.intra_node_reduce_ = Group(intra_copy, GroupKind::intra_node, at.node);
    MICS_MPI_CHECK(MPI_Comm_dup(t.inter_node_.handle(), &inter_copy));
    t.inter_node_reduce_ = Group(inter_copy, GroupKind::inter_node, at.node);
  }
  return t;
}

std::string Topology::describe() const { return describe_shape(shape_); }

}  // namespace mics::topology
