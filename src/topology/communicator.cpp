#include "mics/comm/communicator.hpp"

#include <utility>
#include <vector>

#include "mics/util/error.hpp"

namespace mics::comm {

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

Communicator::Communicator(MPI_Comm comm, GroupKind kind, int node_of_this_rank) : comm_(comm), kind_(kind) {
  MICS_CHECK(comm != MPI_COMM_NULL && comm != MPI_COMM_WORLD && comm != MPI_COMM_SELF,
             "Communicator must own a communicator of its own (duplicate or split one)");
  MICS_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MICS_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  std::vector<int> nodes(static_cast<std::size_t>(size_));
  MICS_MPI_CHECK(MPI_Allgather(&node_of_this_rank, 1, MPI_INT, nodes.data(), 1, MPI_INT, comm_));
  ring_next_off_node_ = nodes[static_cast<std::size_t>((rank_ + 1) % size_)] != node_of_this_rank;
  counters_.participants = size_;
}

Communicator::~Communicator() { release(); }

Communicator::Communicator(Communicator&& other) noexcept
    : comm_(std::exchange(other.comm_, MPI_COMM_NULL)),
      kind_(other.kind_),
      rank_(other.rank_),
      size_(other.size_),
      ring_next_off_node_(other.ring_next_off_node_),
      counters_(other.counters_) {}

Communicator& Communicator::operator=(Communicator&& other) noexcept {
  if (this != &other) {
    release();
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
    kind_ = other.kind_;
    rank_ = other.rank_;
    size_ = other.size_;
    ring_next_off_node_ = other.ring_next_off_node_;
    counters_ = other.counters_;
  }
  return *this;
}

void Communicator::release() noexcept {
  if (comm_ == MPI_COMM_NULL) return;
  // A communicator that outlives MPI_Finalize cannot be freed any more; the runtime has released it.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

void Communicator::record(std::uint64_t bytes_sent, std::uint64_t bytes_received) {
  counters_.collectives += 1;
  counters_.bytes_sent += bytes_sent;
  counters_.bytes_received += bytes_received;
  if (ring_next_off_node_) counters_.bytes_sent_off_node += bytes_sent;
}

TrafficCounters Communicator::take_counters() {
  TrafficCounters snapshot = counters_;
  reset_counters();
  return snapshot;
}

void Communicator::reset_counters() {
  counters_ = TrafficCounters{};
  counters_.participants = size_;
}

std::uint64_t ring_all_gather_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks) {
  return static_cast<std::uint64_t>(ranks - 1) * count_per_rank * elem;
}

std::uint64_t ring_reduce_scatter_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks) {
  return static_cast<std::uint64_t>(ranks - 1) * count_per_rank * elem;
}

std::uint64_t ring_all_reduce_bytes(std::uint64_t count, std::uint64_t elem, int ranks) {
  return 2 * static_cast<std::uint64_t>(ranks - 1) * count * elem / static_cast<std::uint64_t>(ranks);
}

}  // namespace mics::comm
