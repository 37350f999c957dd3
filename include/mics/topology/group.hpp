// An owned MPI communicator for one MiCS process group (RAII). What moves over it, and how much, is the
// comm area's business (comm::Collectives counts traffic per GroupKind).
#pragma once
#include <mpi.h>

#include <cstddef>
#include <string_view>

namespace mics::topology {

enum class GroupKind { world, node, partition, replication, intra_node, inter_node };
inline constexpr std::size_t kGroupKinds = 6;
std::string_view to_string(GroupKind kind);

class Group {
 public:
  Group() = default;  // no communicator (MPI_COMM_NULL)
  // Takes ownership of `comm` (freed on destruction; never MPI_COMM_WORLD or MPI_COMM_SELF).
  // Collective over `comm`: members exchange `node_of_this_rank` to learn whether the ring neighbour
  // (rank + 1 mod size) lives on another node.
  Group(MPI_Comm comm, GroupKind kind, int node_of_this_rank);
  ~Group();
  Group(Group&& other) noexcept;
  Group& operator=(Group&& other) noexcept;
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  bool valid() const { return comm_ != MPI_COMM_NULL; }
  MPI_Comm handle() const { return comm_; }
  GroupKind kind() const { return kind_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Whether this rank's ring neighbour is on another node: what it sends to it crosses the network.
  bool ring_next_off_node() const { return ring_next_off_node_; }

 private:
  void release() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  GroupKind kind_ = GroupKind::world;
  int rank_ = 0;
  int size_ = 0;
  bool ring_next_off_node_ = false;
};

}  // namespace mics::topology
