// Typed collectives on a Communicator. The backend interface (Collectives) works on raw buffers
// (pointer, count in ELEMENTS, DataType), so a NCCL implementation can replace the MPI one without
// touching callers; the typed wrappers below check span sizes and pick the DataType.
// Every collective records its analytic ring traffic on the communicator(s) it runs on.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "mics/comm/communicator.hpp"
#include "mics/util/bf16.hpp"
#include "mics/util/error.hpp"

namespace mics::comm {

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

// average = sum / (communicator size), for floating types only; bf16 sums in float and rounds each
// partial sum to bf16 (so does the division).
enum class ReduceOp { sum, average, max };
std::string_view to_string(ReduceOp op);

// Shared by every Collectives implementation (MPI, NCCL, host-staged), so all check and count alike.
// Throws mics::Error for an average of integers.
void require_floating_for_average(DataType type, ReduceOp op);
// Traffic of a broadcast (the root sends, the others receive) and of a hierarchical all-gather (ring
// all-gathers: `count` elements per rank over inter_node, then count * J over intra_node).
void record_broadcast(Communicator& comm, std::size_t count, DataType type, int root);
void record_hierarchical_all_gather(Communicator& inter_node, Communicator& intra_node, std::size_t count,
                                    std::size_t elem);

// One collective in flight, as a backend sees it.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual bool test() = 0;  // true once complete (progresses the operation)
  virtual void wait() = 0;
};

// Move-only handle of a non-blocking collective. Buffers must stay alive and untouched until wait()
// returns or test() returned true; destroying an unfinished handle waits for it.
class Request {
 public:
  Request() = default;  // already complete
  explicit Request(std::unique_ptr<PendingCollective> pending) : pending_(std::move(pending)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept {
    if (this != &other) {
      finish_noexcept();
      pending_ = std::move(other.pending_);
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() { finish_noexcept(); }

  bool done() const { return pending_ == nullptr; }
  bool test() {
    if (pending_ && pending_->test()) pending_.reset();
    return done();
  }
  void wait() { finish(); }

 private:
  void finish() {
    if (pending_) {
      pending_->wait();
      pending_.reset();
    }
  }
  // For the destructor and move-assignment, which must not throw (that would end in std::terminate
  // without a word). This rank cannot complete its part of the collective, so its peers would wait for it
  // forever: the job stops with the reason, or, while an earlier error unwinds on its way to main()
  // (which stops the job), with that error's reason.
  void finish_noexcept() noexcept {
    try {
      finish();
    } catch (const std::exception& e) {
      pending_.reset();
      if (std::uncaught_exceptions() == 0)
        fatal_one(std::string("a collective failed while its handle was released: ") + e.what());
    }
  }
  std::unique_ptr<PendingCollective> pending_;
};

// The backend interface. Counts are elements: all_gather and hierarchical_all_gather take `count`
// elements in per rank and write count * size out; reduce_scatter takes count * size in and writes
// `count` out (block of this rank); all_reduce works on `count` elements (send == recv: in place).
class Collectives {
 public:
  virtual ~Collectives() = default;

  virtual void all_gather(const void* send, void* recv, std::size_t count, DataType type, Communicator& comm) = 0;
  virtual Request iall_gather(const void* send, void* recv, std::size_t count, DataType type,
                              Communicator& comm) = 0;
  // Over a partition group that spans nodes: inter-node all-gather among the ranks with the same local
  // index, then intra-node; the result is bit-identical to all_gather over the partition group.
  virtual void hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                       Communicator& inter_node, Communicator& intra_node) = 0;
  virtual Request ihierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                           Communicator& inter_node, Communicator& intra_node) = 0;
  virtual void reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                              Communicator& comm) = 0;
  virtual Request ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                  Communicator& comm) = 0;
  virtual void all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                          Communicator& comm) = 0;
  virtual Request iall_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                              Communicator& comm) = 0;
  virtual void broadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) = 0;
  virtual Request ibroadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) = 0;
  virtual void barrier(Communicator& comm) = 0;
  virtual Request ibarrier(Communicator& comm) = 0;
};

// Collectives on MPI (host buffers). Owns the bf16 datatype and reduction operators: construct after
// MPI_Init, destroy before MPI_Finalize (a destructor after it skips the frees).
class MpiCollectives final : public Collectives {
 public:
  MpiCollectives();
  ~MpiCollectives() override;
  MpiCollectives(const MpiCollectives&) = delete;
  MpiCollectives& operator=(const MpiCollectives&) = delete;

  void all_gather(const void* send, void* recv, std::size_t count, DataType type, Communicator& comm) override;
  Request iall_gather(const void* send, void* recv, std::size_t count, DataType type, Communicator& comm) override;
  void hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                               Communicator& inter_node, Communicator& intra_node) override;
  Request ihierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                   Communicator& inter_node, Communicator& intra_node) override;
  void reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                      Communicator& comm) override;
  Request ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                          Communicator& comm) override;
  void all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                  Communicator& comm) override;
  Request iall_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                      Communicator& comm) override;
  void broadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) override;
  Request ibroadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) override;
  void barrier(Communicator& comm) override;
  Request ibarrier(Communicator& comm) override;

  MPI_Datatype mpi_type(DataType type) const;
  MPI_Op mpi_op(DataType type, ReduceOp op) const;  // average maps to the sum operator

 private:
  MPI_Datatype bf16_type_ = MPI_DATATYPE_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;
  MPI_Op bf16_max_ = MPI_OP_NULL;
};

// --- typed wrappers ------------------------------------------------------------------------------
// T is deduced from the output span; with containers, name it: all_gather<float>(c, shard, full, comm).
namespace detail {
[[noreturn]] void size_mismatch(std::string_view what, std::size_t got, std::size_t expected);
template <class T>
void expect_size(std::string_view what, std::span<T> buffer, std::size_t expected) {
  if (buffer.size() != expected) size_mismatch(what, buffer.size(), expected);
}
}  // namespace detail

template <class T>
void all_gather(Collectives& c, std::span<const std::type_identity_t<T>> shard, std::span<T> full, Communicator& comm) {
  detail::expect_size("all_gather output", full, shard.size() * static_cast<std::size_t>(comm.size()));
  c.all_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), comm);
}
template <class T>
Request iall_gather(Collectives& c, std::span<const std::type_identity_t<T>> shard, std::span<T> full, Communicator& comm) {
  detail::expect_size("all_gather output", full, shard.size() * static_cast<std::size_t>(comm.size()));
  return c.iall_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), comm);
}
template <class T>
void hierarchical_all_gather(Collectives& c, std::span<const std::type_identity_t<T>> shard, std::span<T> full, Communicator& inter_node,
                             Communicator& intra_node) {
  detail::expect_size("hierarchical all_gather output", full,
                      shard.size() * static_cast<std::size_t>(inter_node.size() * intra_node.size()));
  c.hierarchical_all_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), inter_node, intra_node);
}
template <class T>
Request ihierarchical_all_gather(Collectives& c, std::span<const std::type_identity_t<T>> shard, std::span<T> full,
                                 Communicator& inter_node, Communicator& intra_node) {
  detail::expect_size("hierarchical all_gather output", full,
                      shard.size() * static_cast<std::size_t>(inter_node.size() * intra_node.size()));
  return c.ihierarchical_all_gather(shard.data(), full.data(), shard.size(), data_type_of<T>(), inter_node,
                                    intra_node);
}
template <class T>
void reduce_scatter(Collectives& c, std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op, Communicator& comm) {
  detail::expect_size("reduce_scatter input", full, shard.size() * static_cast<std::size_t>(comm.size()));
  c.reduce_scatter(full.data(), shard.data(), shard.size(), data_type_of<T>(), op, comm);
}
template <class T>
Request ireduce_scatter(Collectives& c, std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op,
                        Communicator& comm) {
  detail::expect_size("reduce_scatter input", full, shard.size() * static_cast<std::size_t>(comm.size()));
  return c.ireduce_scatter(full.data(), shard.data(), shard.size(), data_type_of<T>(), op, comm);
}
template <class T>
void all_reduce(Collectives& c, std::span<const std::type_identity_t<T>> in, std::span<T> out, ReduceOp op, Communicator& comm) {
  detail::expect_size("all_reduce output", out, in.size());
  c.all_reduce(in.data(), out.data(), in.size(), data_type_of<T>(), op, comm);
}
template <class T>
void all_reduce(Collectives& c, std::span<T> in_place, ReduceOp op, Communicator& comm) {
  c.all_reduce(in_place.data(), in_place.data(), in_place.size(), data_type_of<T>(), op, comm);
}
template <class T>
Request iall_reduce(Collectives& c, std::span<T> in_place, ReduceOp op, Communicator& comm) {
  return c.iall_reduce(in_place.data(), in_place.data(), in_place.size(), data_type_of<T>(), op, comm);
}
template <class T>
void broadcast(Collectives& c, std::span<T> buffer, int root, Communicator& comm) {
  c.broadcast(buffer.data(), buffer.size(), data_type_of<T>(), root, comm);
}
template <class T>
Request ibroadcast(Collectives& c, std::span<T> buffer, int root, Communicator& comm) {
  return c.ibroadcast(buffer.data(), buffer.size(), data_type_of<T>(), root, comm);
}

}  // namespace mics::comm
