// The typed layer: size checks, traffic counted once per operation, and the two channels.
#include "mics/comm/collectives.hpp"

#include <cstdio>
#include <exception>

#include "mics/comm/mpi_transport.hpp"

namespace mics::comm {

std::size_t size_of(DataType type) {
  switch (type) {
    case DataType::f32: return 4;
    case DataType::bf16: return 2;
    case DataType::i32: return 4;
    case DataType::i64: return 8;
    case DataType::f64: return 8;
  }
  return 0;
}

std::string_view to_string(DataType type) {
  switch (type) {
    case DataType::f32: return "float";
    case DataType::bf16: return "bfloat16";
    case DataType::i32: return "int32";
    case DataType::i64: return "int64";
    case DataType::f64: return "double";
  }
  return "unknown";
}

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::average: return "avg";
    case ReduceOp::max: return "max";
  }
  return "unknown";
}

void require_floating_for_average(DataType type, ReduceOp op) {
  if (op == ReduceOp::average && (type == DataType::i32 || type == DataType::i64))
    throw InternalError("average reduction needs a floating element type, got " + std::string(to_string(type)));
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

void Request::finish_in_destructor() noexcept {
  if (!pending_) return;
  if (std::uncaught_exceptions() > 0) {
    // An earlier error is on its way to the command's top level, which stops the job: waiting for peers that
    // may never come would only delay (or hang) that. The operation is dropped unfinished.
    pending_.reset();
    return;
  }
  // Escaping a noexcept function ends in std::terminate, which the mics command turns into a job abort
  // with this error's reason: the peers of an operation this rank cannot finish would wait forever.
  pending_->wait();
  pending_.reset();
}

Collectives::Collectives(Transport& data, MpiTransport& host) : data_(data), host_(host) {}

void Collectives::expect_size(std::string_view what, std::size_t got, std::size_t expected) {
  if (got != expected)
    throw InternalError(std::string(what) + " holds " + std::to_string(got) + " elements, expected " +
                        std::to_string(expected));
}

void Collectives::record(const Group& group, std::uint64_t sent, std::uint64_t received) {
  TrafficCounters& t = traffic_[static_cast<std::size_t>(group.kind())];
  t.participants = group.size();
  t.collectives += 1;
  t.bytes_sent += sent;
  t.bytes_received += received;
  if (group.ring_next_off_node()) t.bytes_sent_off_node += sent;
}

void Collectives::count_all_gather(const Group& group, std::size_t count, std::size_t elem) {
  const std::uint64_t bytes = ring_all_gather_bytes(count, elem, group.size());
  record(group, bytes, bytes);
}

void Collectives::count_broadcast(const Group& group, std::size_t bytes, int root) {
  const std::uint64_t moved = group.size() > 1 ? bytes : 0;
  if (group.rank() == root) {
    record(group, moved, 0);
  } else {
    record(group, 0, moved);
  }
}

void Collectives::host_all_reduce_raw(void* buffer, std::size_t count, DataType type, ReduceOp op,
                                      const Group& group) {
  host_.host_all_reduce(buffer, count, type, op, group);
}

void Collectives::barrier(const Group& group) {
  record(group, 0, 0);
  host_.barrier(group);
}

Traffic Collectives::take_traffic() {
  Traffic snapshot = traffic_;
  traffic_ = Traffic{};
  return snapshot;
}

}  // namespace mics::comm
