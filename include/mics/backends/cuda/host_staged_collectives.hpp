// comm::Collectives on device memory through the host: copy the device buffers to pinned host memory, run
// the MPI collectives there, copy the result back. For several ranks sharing one GPU (NCCL wants one rank
// per GPU) and for testing NCCL against MPI. Slower than NCCL by two PCIe copies per collective and no
// overlap with compute (issuing waits for the compute stream), but bit-identical to the MPI collectives.
// Host-memory buffers pass straight through to the host collectives.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <vector>

#include "mics/backends/cuda/raii.hpp"
#include "mics/comm/collectives.hpp"

namespace mics::backends::cuda {

class HostStagedCollectives final : public comm::Collectives {
 public:
  // compute_stream: the backend's stream (data is read after, and results written in order with, its work).
  HostStagedCollectives(cudaStream_t compute_stream, comm::Collectives& host);
  ~HostStagedCollectives() override;
  HostStagedCollectives(const HostStagedCollectives&) = delete;
  HostStagedCollectives& operator=(const HostStagedCollectives&) = delete;

  void all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                  comm::Communicator& comm) override;
  comm::Request iall_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                            comm::Communicator& comm) override;
  void hierarchical_all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                               comm::Communicator& inter_node, comm::Communicator& intra_node) override;
  comm::Request ihierarchical_all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                                         comm::Communicator& inter_node, comm::Communicator& intra_node) override;
  void reduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type, comm::ReduceOp op,
                      comm::Communicator& comm) override;
  comm::Request ireduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type,
                                comm::ReduceOp op, comm::Communicator& comm) override;
  void all_reduce(const void* send, void* recv, std::size_t count, comm::DataType type, comm::ReduceOp op,
                  comm::Communicator& comm) override;
  comm::Request iall_reduce(const void* send, void* recv, std::size_t count, comm::DataType type, comm::ReduceOp op,
                            comm::Communicator& comm) override;
  void broadcast(void* buffer, std::size_t count, comm::DataType type, int root, comm::Communicator& comm) override;
  comm::Request ibroadcast(void* buffer, std::size_t count, comm::DataType type, int root,
                           comm::Communicator& comm) override;
  void barrier(comm::Communicator& comm) override;
  comm::Request ibarrier(comm::Communicator& comm) override;

 private:
  class Pending;
  using Start = std::function<comm::Request(void* host_send, void* host_recv)>;
  // Copies send_bytes of `send` to a pinned buffer (after the compute stream's work), starts the host
  // collective on (host_send, host_recv), and on completion copies recv_bytes back to `recv` on the compute
  // stream. in_place: host_recv is host_send.
  comm::Request stage(const void* send, std::size_t send_bytes, void* recv, std::size_t recv_bytes, bool in_place,
                      const Start& start);
  PinnedBuffer<unsigned char> acquire(std::size_t bytes);
  void release(PinnedBuffer<unsigned char>&& buffer);

  cudaStream_t compute_stream_;
  comm::Collectives& host_;
  std::vector<PinnedBuffer<unsigned char>> pool_;  // free pinned buffers, reused by size
};

}  // namespace mics::backends::cuda
