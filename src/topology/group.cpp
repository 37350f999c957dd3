#include "mics/topology/group.hpp"

#include <utility>
#include <vector>

#include "mics/util/error.hpp"

namespace mics::topology {

std::string_view to_string(GroupKind kind) {
  switch (kind) {
    case GroupKind::world: return "world";
    case GroupKind::node: return "node";
    case GroupKind::partition: return "partition";
    case GroupKind::replication: return "replication";
    case GroupKind::intra_node: return "intra_node";
    case GroupKind::inter_node: return "inter_node";
  }
  return "unknown";
}

Group::Group(MPI_Comm comm, GroupKind kind, int node_of_this_rank) : comm_(comm), kind_(kind) {
  MICS_CHECK(comm != MPI_COMM_NULL && comm != MPI_COMM_WORLD && comm != MPI_COMM_SELF,
             "Group must own a communicator of its own (duplicate or split one)");
  MICS_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MICS_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  std::vector<int> nodes(static_cast<std::size_t>(size_));
  MICS_MPI_CHECK(MPI_Allgather(&node_of_this_rank, 1, MPI_INT, nodes.data(), 1, MPI_INT, comm_));
  ring_next_off_node_ = nodes[static_cast<std::size_t>((rank_ + 1) % size_)] != node_of_this_rank;
}

Group::~Group() { release(); }

Group::Group(Group&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      kind_(other.kind_),
      rank_(other.rank_),
      size_(other.size_),
      ring_next_off_node_(other.ring_next_off_node_) {}

Group& Group::operator=(Group&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    kind_ = other.kind_;
    rank_ = other.rank_;
    size_ = other.size_;
    ring_next_off_node_ = other.ring_next_off_node_;
  }
  return *this;
}

void Group::release() noexcept {
  if (comm_ == MPI_COMM_NULL) return;
  // A communicator that outlives MPI_Finalize cannot be freed any more; the runtime has released it.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

}  // namespace mics::topology
