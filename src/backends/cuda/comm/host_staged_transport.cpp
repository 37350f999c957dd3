// HostStagedTransport: device -> pinned host -> MPI -> device.
#include "mics/backends/cuda/host_staged_transport.hpp"

#include <algorithm>
#include <utility>

#include "mics/backends/cuda/check.hpp"

namespace mics::backends::cuda {

using comm::DataType;
using comm::Group;
using comm::ReduceOp;
using comm::Request;

// The MPI operation in flight; on completion the result is copied back on the compute stream.
class HostStagedTransport::Pending final : public comm::PendingCollective {
 public:
  Pending(HostStagedTransport& owner, Request inner, PinnedBuffer<unsigned char> send_buffer,
          PinnedBuffer<unsigned char> recv_buffer, bool in_place, void* recv, std::size_t recv_bytes)
      : owner_(owner),
        send_buffer_(std::move(send_buffer)),
        recv_buffer_(std::move(recv_buffer)),
        in_place_(in_place),
        recv_(recv),
        recv_bytes_(recv_bytes),
        inner_(std::move(inner)) {}
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

  HostStagedTransport& owner_;
  PinnedBuffer<unsigned char> send_buffer_;
  PinnedBuffer<unsigned char> recv_buffer_;
  bool in_place_;
  void* recv_;
  std::size_t recv_bytes_;
  bool finished_ = false;
  // Declared last, so destroyed first: an MPI operation still in flight (destroyed unfinished only after
  // a wait() threw) is finished by its own Request's destructor while the pinned buffers it reads and
  // writes are still allocated. Its result is not copied back.
  Request inner_;
};

HostStagedTransport::HostStagedTransport(cudaStream_t compute_stream, comm::MpiTransport& mpi)
    : compute_stream_(compute_stream), mpi_(mpi) {}

HostStagedTransport::~HostStagedTransport() = default;

PinnedBuffer<unsigned char> HostStagedTransport::acquire(std::size_t bytes) {
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

void HostStagedTransport::release(PinnedBuffer<unsigned char>&& buffer) {
  if (buffer.size() > 0) pool_.push_back(std::move(buffer));
}

Request HostStagedTransport::stage(const void* send, std::size_t send_bytes, void* recv, std::size_t recv_bytes,
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

Request HostStagedTransport::all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                        const Group& group) {
  const std::size_t bytes = count * comm::size_of(type);
  return stage(send, bytes, recv, bytes * static_cast<std::size_t>(group.size()), false,
               [&, count, type](void* hs, void* hr) { return mpi_.all_gather(hs, hr, count, type, group); });
}

Request HostStagedTransport::hierarchical_all_gather(const void* send, void* recv, std::size_t count,
                                                     DataType type, const Group& inter_node,
                                                     const Group& intra_node) {
  const std::size_t bytes = count * comm::size_of(type);
  const auto ranks = static_cast<std::size_t>(inter_node.size()) * static_cast<std::size_t>(intra_node.size());
  return stage(send, bytes, recv, bytes * ranks, false, [&, count, type](void* hs, void* hr) {
    return mpi_.hierarchical_all_gather(hs, hr, count, type, inter_node, intra_node);
  });
}

Request HostStagedTransport::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                            ReduceOp op, const Group& group) {
  const std::size_t bytes = count * comm::size_of(type);
  return stage(send, bytes * static_cast<std::size_t>(group.size()), recv, bytes, false,
               [&, count, type, op](void* hs, void* hr) { return mpi_.reduce_scatter(hs, hr, count, type, op, group); });
}

Request HostStagedTransport::hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count,
                                                         DataType type, ReduceOp op, const Group& inter_node,
                                                         const Group& intra_node) {
  const std::size_t bytes = count * comm::size_of(type);
  const auto ranks = static_cast<std::size_t>(inter_node.size()) * static_cast<std::size_t>(intra_node.size());
  return stage(send, bytes * ranks, recv, bytes, false, [&, count, type, op](void* hs, void* hr) {
    return mpi_.hierarchical_reduce_scatter(hs, hr, count, type, op, inter_node, intra_node);
  });
}

Request HostStagedTransport::all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op,
                                        const Group& group) {
  const std::size_t bytes = count * comm::size_of(type);
  return stage(buffer, bytes, buffer, bytes, true, [&, count, type, op](void* hs, void*) {
    return mpi_.all_reduce(hs, count, type, op, group);
  });
}

Request HostStagedTransport::broadcast(void* buffer, std::size_t count, DataType type, int root,
                                       const Group& group) {
  const std::size_t bytes = count * comm::size_of(type);
  return stage(buffer, bytes, buffer, bytes, true, [&, count, type, root](void* hs, void*) {
    return mpi_.broadcast(hs, count, type, root, group);
  });
}

}  // namespace mics::backends::cuda
