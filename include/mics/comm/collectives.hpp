// Collectives in two layers.
//
// Transport: what an implementation provides (MPI, NCCL, MPI through pinned host buffers): every
// data-channel operation once, non-blocking, on raw buffers in the memory it serves (host memory for
// the CPU backend, device memory for CUDA), counts in ELEMENTS. A multi-stage operation (the hierarchical
// all-gather) hides its stages behind its Request.
//
// Collectives: the typed layer everything else calls. It checks span sizes, picks the DataType, counts
// each operation's traffic once (analytic ring bytes, per group kind: docs/algorithms.md#traffic-accounting), and
// offers two channels:
//   - the data channel (parameters, gradients): in the backend's memory, on the Transport, non-blocking;
//     blocking is Request::wait();
//   - the host channel (loss, norms, flags): host scalars, always MPI, complete on return.
// So no implementation ever has to guess from a pointer which memory it was given.
#pragma once
#include <mpi.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "mics/topology/group.hpp"
#include "mics/util/bf16.hpp"
#include "mics/util/error.hpp"

namespace mics::comm {

using topology::Group;
using topology::GroupKind;

enum class DataType { f32, bf16, i32, i64, f64 };
std::size_t size_of(DataType type);
std::string_view to_string(DataType type);  // nccl-tests names: float, bfloat16, int32, int64, double

template <class T>
constexpr DataType data_type_of() {
  if constexpr (std::is_same_v<T, float>) return DataType::f32;
  else if constexpr (std::is_same_v<T, bf16>) return DataType::bf16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DataType::i32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DataType::i64;
  else if constexpr (std::is_same_v<T, double>) return DataType::f64;
  else static_assert(sizeof(T) == 0, "no collective DataType for this element type");
}

// average = sum / (group size), for floating types only; bf16 sums in float and rounds each partial sum
// to bf16 (so does the division).
enum class ReduceOp { sum, average, max };
std::string_view to_string(ReduceOp op);
// Throws InternalError for an average of integers (checked once, in the typed layer).
void require_floating_for_average(DataType type, ReduceOp op);

// --- completion ------------------------------------------------------------------------------------------

// One operation in flight, as an implementation sees it.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual bool test() = 0;  // true once complete (progresses the operation, starts its next stage)
  virtual void wait() = 0;  // complete: on the host (MPI) or for the compute stream's next work (NCCL)
};

// Move-only handle of an operation in flight. Buffers must stay alive and untouched until wait() returns
// or test() returned true. Destroying an unfinished handle waits for it: a failure there cannot be thrown
// (destructors do not throw), so it ends the process through std::terminate (the mics command turns that
// into a job abort with the reason), unless an earlier error is already unwinding.
class [[nodiscard]] Request {
 public:
  Request() = default;  // already complete
  explicit Request(std::unique_ptr<PendingCollective> pending) : pending_(std::move(pending)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      finish_in_destructor();
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() { finish_in_destructor(); }

  bool done() const { return pending_ == nullptr; }
  bool test() {
    if (pending_ && pending_->test()) pending_.reset();
    return done();
  }
  void wait() {
    if (!pending_) return;
    pending_->wait();
    pending_.reset();
  }

 private:
  void finish_in_destructor() noexcept;
  std::unique_ptr<PendingCollective> pending_;
};

// --- the implementation interface ----------------------------------------------------------------------------

// all_gather: `count` elements in per rank, count * size out (rank i's block at i * count).
// hierarchical_all_gather: the same result over a partition group that spans nodes: inter-node gather among
// the ranks with the same local index, then intra-node (docs/algorithms.md#hierarchical-all-gather).
// reduce_scatter: count * size in, this rank's reduced block of `count` out (send != recv).
// hierarchical_reduce_scatter: the same result over a partition group that spans nodes, mirror of the
// gather: J reduce-scatters inside the node (one per node's row of shards) into a J * count intermediate
// the operation owns, then one reduce-scatter among the ranks with the same local index
// (docs/algorithms.md#hierarchical-reduce-scatter). Equal to the flat one up to the order of the sums.
// all_reduce: in place on `count` elements. broadcast: in place from `root`.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string_view name() const = 0;  // "mpi", "nccl", "staged"
  virtual Request all_gather(const void* send, void* recv, std::size_t count, DataType type, const Group& group) = 0;
  virtual Request hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                          const Group& inter_node, const Group& intra_node) = 0;
  virtual Request reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                 const Group& group) = 0;
  virtual Request hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                              ReduceOp op, const Group& inter_node, const Group& intra_node) = 0;
  virtual Request all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group) = 0;
  virtual Request broadcast(void* buffer, std::size_t count, DataType type, int root, const Group& group) = 0;
  // Moves the operations in flight along. MPI advances non-blocking operations only inside MPI calls, and
  // starts a hierarchical gather's second stage only once the first is seen complete: callers give it a
  // turn between compute stages. NCCL needs none.
  virtual void progress() {}
};

// --- traffic -------------------------------------------------------------------------------------------------

// Traffic of this rank on one group kind since the last take.
struct TrafficCounters {
  std::uint64_t collectives = 0;          // operations issued (a barrier counts)
  std::uint64_t bytes_sent = 0;           // by this rank
  std::uint64_t bytes_received = 0;       // by this rank
  std::uint64_t bytes_sent_off_node = 0;  // of bytes_sent, those to a ring neighbour on another node
  int participants = 0;                   // group size
};
using Traffic = std::array<TrafficCounters, topology::kGroupKinds>;  // by GroupKind

// Per-rank bytes of the ring algorithms (integer arithmetic, elem = element size in bytes):
//   all-gather, c elements in per rank over n ranks:        sent = received = (n-1)*c*elem
//   reduce-scatter, c elements out per rank:                 sent = received = (n-1)*c*elem
//   all-reduce of N elements (reduce-scatter + all-gather):  sent = received = 2*(n-1)*N*elem/n
//   broadcast of N elements: the root sends N*elem, every other rank receives N*elem; barrier: nothing
std::uint64_t ring_all_gather_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks);
std::uint64_t ring_reduce_scatter_bytes(std::uint64_t count_per_rank, std::uint64_t elem, int ranks);
std::uint64_t ring_all_reduce_bytes(std::uint64_t count, std::uint64_t elem, int ranks);

class MpiTransport;

// --- the typed layer ------------------------------------------------------------------------------------------

class Collectives {
 public:
  // `data` moves the backend's memory; `host` (MPI) moves host scalars. Both must outlive this.
  Collectives(Transport& data, MpiTransport& host);
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  Transport& data_transport() { return data_; }

  // Data channel. T is deduced from the output span; with containers name it: all_gather<float>(...).
  template <class T>
  Request all_gather(std::span<const std::type_identity_t<T>> shard, std::span<T> full, const Group& group) {
    expect_size("all_gather output", full.size(), shard.size() * static_cast<std::size_t>(group.size()));
    count_all_gather(group, shard.size(), sizeof(T));
    return data_.all_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), group);
  }
  template <class T>
  Request hierarchical_all_gather(std::span<const std::type_identity_t<T>> shard, std::span<T> full,
                                  const Group& inter_node, const Group& intra_node) {
    expect_size("hierarchical all_gather output", full.size(),
                shard.size() * static_cast<std::size_t>(inter_node.size() * intra_node.size()));
    count_all_gather(inter_node, shard.size(), sizeof(T));
    count_all_gather(intra_node, shard.size() * static_cast<std::size_t>(inter_node.size()), sizeof(T));
    return data_.hierarchical_all_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), inter_node,
                                         intra_node);
  }
  template <class T>
  Request reduce_scatter(std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op,
                         const Group& group) {
    expect_size("reduce_scatter input", full.size(), shard.size() * static_cast<std::size_t>(group.size()));
    const std::uint64_t bytes = ring_reduce_scatter_bytes(shard.size(), sizeof(T), group.size());
    require_floating_for_average(data_type_of<T>(), op);
    record(group, bytes, bytes);
    return data_.reduce_scatter(full.data(), shard.data(), shard.size(), data_type_of<T>(), op, group);
  }
  // Counted as J reduce-scatters of c elements on the intra-node group ((L-1)*J*c elements sent) and one
  // on the inter-node group ((J-1)*c: all of it off the node).
  template <class T>
  Request hierarchical_reduce_scatter(std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op,
                                      const Group& inter_node, const Group& intra_node) {
    expect_size("hierarchical reduce_scatter input", full.size(),
                shard.size() * static_cast<std::size_t>(inter_node.size() * intra_node.size()));
    require_floating_for_average(data_type_of<T>(), op);
    const std::uint64_t intra = ring_reduce_scatter_bytes(shard.size(), sizeof(T), intra_node.size());
    for (int row = 0; row < inter_node.size(); ++row) record(intra_node, intra, intra);
    const std::uint64_t inter = ring_reduce_scatter_bytes(shard.size(), sizeof(T), inter_node.size());
    record(inter_node, inter, inter);
    return data_.hierarchical_reduce_scatter(full.data(), shard.data(), shard.size(), data_type_of<T>(), op,
                                             inter_node, intra_node);
  }
  template <class T>
  Request all_reduce(std::span<T> in_place, ReduceOp op, const Group& group) {
    const std::uint64_t bytes = ring_all_reduce_bytes(in_place.size(), sizeof(T), group.size());
    require_floating_for_average(data_type_of<T>(), op);
    record(group, bytes, bytes);
    return data_.all_reduce(in_place.data(), in_place.size(), data_type_of<T>(), op, group);
  }
  template <class T>
  Request broadcast(std::span<T> buffer, int root, const Group& group) {
    count_broadcast(group, buffer.size() * sizeof(T), root);
    return data_.broadcast(buffer.data(), buffer.size(), data_type_of<T>(), root, group);
  }

  // Host channel: host memory, MPI, complete on return.
  template <class T>
  void host_all_reduce(std::span<T> in_place, ReduceOp op, const Group& group) {
    const std::uint64_t bytes = ring_all_reduce_bytes(in_place.size(), sizeof(T), group.size());
    require_floating_for_average(data_type_of<T>(), op);
    record(group, bytes, bytes);
    host_all_reduce_raw(in_place.data(), in_place.size(), data_type_of<T>(), op, group);
  }
  void barrier(const Group& group);

  // Gives the data channel's operations in flight a turn (Transport::progress).
  void progress() { data_.progress(); }

  // What this rank moved per group kind since the last take; the counters restart from zero.
  Traffic take_traffic();

 private:
  static void expect_size(std::string_view what, std::size_t got, std::size_t expected);
  void count_all_gather(const Group& group, std::size_t count, std::size_t elem);
  void count_broadcast(const Group& group, std::size_t bytes, int root);
  void record(const Group& group, std::uint64_t sent, std::uint64_t received);
  void host_all_reduce_raw(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group);

  Transport& data_;
  MpiTransport& host_;
  Traffic traffic_{};
};

}  // namespace mics::comm
