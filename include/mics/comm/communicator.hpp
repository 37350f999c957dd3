// An owned MPI communicator for one MiCS process group, with analytic traffic counters.
// The counters follow the ring algorithm (nccl-tests bus-bandwidth conventions): they say how many
// bytes this rank sends and receives per collective, not what the MPI library happens to do.
// (Implemented in mics_topology, which builds the communicators; the collectives live in mics_comm.)
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string_view>

namespace mics::comm {

enum class GroupKind { world, node, partition, replication, intra_node, inter_node };
std::string_view to_string(GroupKind kind);

// Traffic of this rank on one communicator since the last reset.
struct TrafficCounters {
  std::uint64_t collectives = 0;         // collectives issued (a barrier counts)
  std::uint64_t bytes_sent = 0;          // by this rank
  std::uint64_t bytes_received = 0;      // by this rank
  std::uint64_t bytes_sent_off_node = 0; // of bytes_sent, those to a ring neighbour on another node
  int participants = 0;                  // communicator size
};

class Communicator {
 public:
  Communicator() = default;  // no communicator (MPI_COMM_NULL)
  // Takes ownership of `comm` (freed on destruction; never MPI_COMM_WORLD or MPI_COMM_SELF).
  // Collective over `comm`: members exchange `node_of_this_rank` to learn whether the ring
  // neighbour (rank + 1 mod size) lives on another node.
  Communicator(MPI_Comm comm, GroupKind kind, int node_of_this_rank);
  ~Communicator();
  Communicator(Communicator&& other) noexcept;
  Communicator& operator=(Communicator&& other) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  bool valid() const { return comm_ != MPI_COMM_NULL; }
  MPI_Comm handle() const { return comm_; }
  GroupKind kind() const { return kind_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool ring_next_off_node() const { return ring_next_off_node_; }

  // Count one collective in which this rank sends and receives the given bytes.
  void record(std::uint64_t bytes_sent, std::uint64_t bytes_received);
  const TrafficCounters& counters() const { return counters_; }
  // Snapshot, then zero (the engine reports traffic per optimizer step).
  TrafficCounters take_counters();
  void reset_counters();

 private:
  void release() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  GroupKind kind_ = GroupKind::world;
  int rank_ = 0;
  int size_ = 0;
  bool ring_next_off_node_ = false;
  TrafficCounters counters_;
};

// Analytic per-rank bytes of the ring algorithms (integer arithmetic, elem = element size in bytes):
//   all-gather, c elements in per rank over n ranks:        sent = received = (n-1)*c*elem
//   reduce-scatter, c elements out per rank:                 sent = received = (n-1)*c*elem
//   all-reduce of N elements (reduce-scatter + all-gather):  sent = received = 2*(n-1)*N*elem/n
//   broadcast of N elements: the root sends N*elem, every other rank receives N*elem
//   barrier: nothing
std::uint64_t ring_all_gather_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks);
std::uint64_t ring_reduce_scatter_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks);
std::uint64_t ring_all_reduce_bytes(std::uint64_t count, std::uint64_t elem, int ranks);

}  // namespace mics::comm
