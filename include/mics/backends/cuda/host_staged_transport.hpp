// comm::Transport on device memory through the host: copy the device buffers to pinned host memory, run the
// MPI transport's operation there, copy the result back. For several ranks sharing one GPU (NCCL wants one
// rank per GPU) and for testing NCCL against MPI. Slower than NCCL by two PCIe copies per operation and no
// overlap with compute (issuing waits for the compute stream), but bit-identical to the MPI transport.
// Every buffer is device memory (the typed layer sends host scalars over MPI itself).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <vector>

#include "mics/backends/cuda/raii.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/comm/mpi_transport.hpp"

namespace mics::backends::cuda {

class HostStagedTransport final : public comm::Transport {
 public:
  // compute_stream: the backend's stream (data is read after, and results written in order with, its work).
  // `mpi` must outlive this, and requests must not outlive this.
  HostStagedTransport(cudaStream_t compute_stream, comm::MpiTransport& mpi);
  ~HostStagedTransport() override;
  HostStagedTransport(const HostStagedTransport&) = delete;
  HostStagedTransport& operator=(const HostStagedTransport&) = delete;

  std::string_view name() const override { return "staged"; }
  comm::Request all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                           const comm::Group& group) override;
  comm::Request hierarchical_all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                                        const comm::Group& inter_node, const comm::Group& intra_node) override;
  comm::Request reduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type,
                               comm::ReduceOp op, const comm::Group& group) override;
  comm::Request hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type,
                                            comm::ReduceOp op, const comm::Group& inter_node,
                                            const comm::Group& intra_node) override;
  comm::Request all_reduce(void* buffer, std::size_t count, comm::DataType type, comm::ReduceOp op,
                           const comm::Group& group) override;
  comm::Request broadcast(void* buffer, std::size_t count, comm::DataType type, int root,
                          const comm::Group& group) override;
  // The MPI operations progress only inside MPI calls (and a hierarchical gather's second stage starts
  // there): the MPI transport's turn.
  void progress() override { mpi_.progress(); }

 private:
  class Pending;
  using Start = std::function<comm::Request(void* host_send, void* host_recv)>;
  // Copies send_bytes of `send` to a pinned buffer (after the compute stream's work), starts the MPI
  // operation on (host_send, host_recv), and on completion copies recv_bytes back to `recv` on the compute
  // stream. in_place: host_recv is host_send.
  comm::Request stage(const void* send, std::size_t send_bytes, void* recv, std::size_t recv_bytes, bool in_place,
                      const Start& start);
  PinnedBuffer<unsigned char> acquire(std::size_t bytes);
  void release(PinnedBuffer<unsigned char>&& buffer);

  cudaStream_t compute_stream_;
  comm::MpiTransport& mpi_;
  std::vector<PinnedBuffer<unsigned char>> pool_;  // free pinned buffers, reused by size
};

}  // namespace mics::backends::cuda
