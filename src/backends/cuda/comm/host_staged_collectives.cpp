// HostStagedCollectives: device -> pinned host -> MPI -> device.
#include "mics/backends/cuda/host_staged_collectives.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <utility>

#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/nccl_collectives.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

using comm::DataType;
using comm::ReduceOp;
using comm::Request;


// The host collective in flight; on completion the result is copied back on the compute stream.
class HostStagedCollectives::Pending final : public comm::PendingCollective {
 public:
  Pending(HostStagedCollectives& owner, Request inner, PinnedBuffer<unsigned char> send_buffer,
          PinnedBuffer<unsigned char> recv_buffer, bool in_place, void* recv, std::size_t recv_bytes)
      : owner_(owner),
        send_buffer_(std::move(send_buffer)),
        recv_buffer_(std::move(recv_buffer)),
        in_place_(in_place),
        recv_(recv),
        recv_bytes_(recv_bytes),
        inner_(std::move(inner)) {}
  ~Pending() override {
    if (finished_) return;
    try {
      inner_.wait();
      finish();
    } catch (const std::exception& e) {  // a destructor must not throw: report and carry on
      std::fprintf(stderr, "mics: host-staged collective failed while being destroyed: %s\n", e.what());
    }
  }
  bool test() override {
    if (finished_) return true;
    if (!inner_.test()) return false;
    finish();
    return true;
  }
  void wait() override {
    if (finished_) return;
    inner_.wait();
    finish();
  }

 private:
  void finish() {
    finished_ = true;
    const unsigned char* result = in_place_ ? send_buffer_.data() : recv_buffer_.data();
    if (recv_bytes_ > 0) {
      CUDA_CHECK(cudaMemcpyAsync(recv_, result, recv_bytes_, cudaMemcpyHostToDevice, owner_.compute_stream_));
      // The pinned buffer returns to the pool: the copy out of it must be done first.
      CUDA_CHECK(cudaStreamSynchronize(owner_.compute_stream_));
    }
    owner_.release(std::move(send_buffer_));
    owner_.release(std::move(recv_buffer_));
  }

  HostStagedCollectives& owner_;
  PinnedBuffer<unsigned char> send_buffer_;
  PinnedBuffer<unsigned char> recv_buffer_;
  bool in_place_;
  void* recv_;
  std::size_t recv_bytes_;
  bool finished_ = false;
  // Declared last, so destroyed first: an MPI request still in flight (the destructor's wait failed) is
  // waited on by its own destructor while the pinned buffers it reads and writes are still allocated.
  Request inner_;
};

HostStagedCollectives::HostStagedCollectives(cudaStream_t compute_stream, comm::Collectives& host)
    : compute_stream_(compute_stream), host_(host) {}

HostStagedCollectives::~HostStagedCollectives() = default;

PinnedBuffer<unsigned char> HostStagedCollectives::acquire(std::size_t bytes) {
  if (bytes == 0) return {};
  // smallest free buffer that fits
  auto best = pool_.end();
  for (auto it = pool_.begin(); it != pool_.end(); ++it) {
    if (it->size() >= bytes && (best == pool_.end() || it->size() < best->size())) best = it;
  }
  if (best == pool_.end()) return PinnedBuffer<unsigned char>(bytes);
  PinnedBuffer<unsigned char> buffer = std::move(*best);
  pool_.erase(best);
  return buffer;
}

void HostStagedCollectives::release(PinnedBuffer<unsigned char>&& buffer) {
  if (buffer.size() > 0) pool_.push_back(std::move(buffer));
}

Request HostStagedCollectives::stage(const void* send, std::size_t send_bytes, void* recv, std::size_t recv_bytes,
                                     bool in_place, const Start& start) {
  PinnedBuffer<unsigned char> send_buffer = acquire(in_place ? std::max(send_bytes, recv_bytes) : send_bytes);
  PinnedBuffer<unsigned char> recv_buffer = in_place ? PinnedBuffer<unsigned char>() : acquire(recv_bytes);
  if (send_bytes > 0) {
    // On the compute stream, after its work so far (the data is final); MPI needs it on the host now.
    CUDA_CHECK(cudaMemcpyAsync(send_buffer.data(), send, send_bytes, cudaMemcpyDeviceToHost, compute_stream_));
    CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
  }
  void* host_send = send_buffer.data();
  void* host_recv = in_place ? send_buffer.data() : recv_buffer.data();
  Request inner = start(host_send, host_recv);
  return Request(std::make_unique<Pending>(*this, std::move(inner), std::move(send_buffer), std::move(recv_buffer),
                                           in_place, recv, recv_bytes));
}

// --- all-gather ----------------------------------------------------------------------------------------------

void HostStagedCollectives::all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                       comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.all_gather(send, recv, count, type, comm);
  iall_gather(send, recv, count, type, comm).wait();
}

Request HostStagedCollectives::iall_gather(const void* send, void* recv, std::size_t count, DataType type,
                                           comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.iall_gather(send, recv, count, type, comm);
  const std::size_t bytes = count * comm::size_of(type);
  return stage(send, bytes, recv, bytes * static_cast<std::size_t>(comm.size()), false,
               [&, count, type](void* hs, void* hr) { return host_.iall_gather(hs, hr, count, type, comm); });
}

void HostStagedCollectives::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                                    comm::Communicator& inter_node, comm::Communicator& intra_node) {
  if (!device_buffers(send, recv)) {
    return host_.hierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node).wait();
}

Request HostStagedCollectives::ihierarchical_all_gather(const void* send, void* recv, std::size_t count,
                                                        DataType type, comm::Communicator& inter_node,
                                                        comm::Communicator& intra_node) {
  if (!device_buffers(send, recv)) {
    return host_.ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  const std::size_t bytes = count * comm::size_of(type);
  const auto ranks = static_cast<std::size_t>(inter_node.size()) * static_cast<std::size_t>(intra_node.size());
  return stage(send, bytes, recv, bytes * ranks, false, [&, count, type](void* hs, void* hr) {
    return host_.ihierarchical_all_gather(hs, hr, count, type, inter_node, intra_node);
  });
}

// --- reductions ----------------------------------------------------------------------------------------------

void HostStagedCollectives::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                           ReduceOp op, comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.reduce_scatter(send, recv, count, type, op, comm);
  ireduce_scatter(send, recv, count, type, op, comm).wait();
}

Request HostStagedCollectives::ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                               ReduceOp op, comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.ireduce_scatter(send, recv, count, type, op, comm);
  const std::size_t bytes = count * comm::size_of(type);
  return stage(send, bytes * static_cast<std::size_t>(comm.size()), recv, bytes, false,
               [&, count, type, op](void* hs, void* hr) { return host_.ireduce_scatter(hs, hr, count, type, op, comm); });
}

void HostStagedCollectives::all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                       comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.all_reduce(send, recv, count, type, op, comm);
  iall_reduce(send, recv, count, type, op, comm).wait();
}

Request HostStagedCollectives::iall_reduce(const void* send, void* recv, std::size_t count, DataType type,
                                           ReduceOp op, comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.iall_reduce(send, recv, count, type, op, comm);
  const std::size_t bytes = count * comm::size_of(type);
  const bool in_place = send == recv;
  return stage(send, bytes, recv, bytes, in_place, [&, count, type, op](void* hs, void* hr) {
    return host_.iall_reduce(hs, hr, count, type, op, comm);
  });
}

// --- broadcast, barrier ----------------------------------------------------------------------------------------

void HostStagedCollectives::broadcast(void* buffer, std::size_t count, DataType type, int root,
                                      comm::Communicator& comm) {
  if (!is_device_pointer(buffer)) return host_.broadcast(buffer, count, type, root, comm);
  ibroadcast(buffer, count, type, root, comm).wait();
}

Request HostStagedCollectives::ibroadcast(void* buffer, std::size_t count, DataType type, int root,
                                          comm::Communicator& comm) {
  if (!is_device_pointer(buffer)) return host_.ibroadcast(buffer, count, type, root, comm);
  const std::size_t bytes = count * comm::size_of(type);
  return stage(buffer, bytes, buffer, bytes, true, [&, count, type, root](void* hs, void*) {
    return host_.ibroadcast(hs, count, type, root, comm);
  });
}

void HostStagedCollectives::barrier(comm::Communicator& comm) { host_.barrier(comm); }
Request HostStagedCollectives::ibarrier(comm::Communicator& comm) { return host_.ibarrier(comm); }

}  // namespace mics::backends::cuda
