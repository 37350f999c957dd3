// comm::Transport on device memory with NCCL, one rank per GPU.
//
// One NcclCommunicator per MiCS group: partition, replication, intra- and inter-node at construction; any
// other group (the world) when an operation over it is first issued (every member issues it, so every
// member makes it at the same point). Failure handling: nccl_communicator.hpp and nccl_watchdog.hpp.
//
// Ordering: operations run on a dedicated communication stream. Issuing one records an event on the compute
// stream that the communication stream waits on (the data is ready); completing one (wait(), or test()
// returning true) makes the compute stream wait on an event recorded after the operation. So a
// non-blocking gather of the next unit overlaps the current unit's compute, and no host thread blocks:
// Request::wait() does not wait on the host. test() and wait() raise a recorded failure (PeerError)
// instead of handing out an aborted operation's result; so do the next operation issued and progress().
// Host-channel calls (comm::Collectives' scalars and barriers, on MPI) do not see it. Nothing waits on the
// host for an operation here: a host copy of its result (the backend's copy_to_host, after wait()) made
// while the watchdog aborts it can read garbage, and the failure is raised at the next call into the
// transport, or by the transport's destructor (the last resort) when none comes.
//
// Semantics as the MPI transport, except ReduceOp::average, which is ncclAvg (each input multiplied by 1/n,
// then summed): equal to MPI's sum / n when n is a power of two, within rounding otherwise. Every buffer is
// device memory of this rank's GPU (the typed layer sends host scalars over MPI); nothing here inspects a
// pointer, and traffic is counted by the typed layer.
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mics/backends/cuda/nccl_communicator.hpp"
#include "mics/backends/cuda/nccl_watchdog.hpp"
#include "mics/backends/cuda/raii.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/topology/topology.hpp"

namespace mics::backends::cuda {

// ncclDataType_t / ncclRedOp_t of the comm enums (average is ncclAvg).
ncclDataType_t nccl_type(comm::DataType type);
ncclRedOp_t nccl_op(comm::ReduceOp op);

class NcclTransport final : public comm::Transport {
 public:
  // Collective over every valid group of `topology` but the world. `device` is the GPU of this rank (the
  // backend's: made current on the calling thread), `compute_stream` the backend's stream. Requests must
  // not outlive the transport.
  NcclTransport(const topology::Topology& topology, int device, cudaStream_t compute_stream,
                const NcclOptions& options = {});
  // Stops the watchdog; a failure it recorded that nothing raised (it came after the main thread's last
  // call) makes the results suspect: the last resort. Otherwise the communicators are finalized in
  // creation order (see ~NcclCommunicator), and the aborts are waited for (bounded).
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  std::string_view name() const override { return "nccl"; }
  comm::Request all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                           const comm::Group& group) override;
  // Inter-node stage: grouped ncclSend/ncclRecv straight into the slots (j*L + l); intra-node stage: J
  // in-place all-gathers (one per inter-node block) in one ncclGroupStart/End, enqueued after the first.
  comm::Request hierarchical_all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                                        const comm::Group& inter_node, const comm::Group& intra_node) override;
  comm::Request reduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type,
                               comm::ReduceOp op, const comm::Group& group) override;
  // Intra-node stage: J ncclReduceScatter calls (one per row of L shards) in one group, into a J*count
  // intermediate allocated stream-ordered on the communication stream (cudaMallocAsync); inter-node stage:
  // one ncclReduceScatter of it, after which the intermediate is freed on the same stream.
  comm::Request hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, comm::DataType type,
                                            comm::ReduceOp op, const comm::Group& inter_node,
                                            const comm::Group& intra_node) override;
  comm::Request all_reduce(void* buffer, std::size_t count, comm::DataType type, comm::ReduceOp op,
                           const comm::Group& group) override;
  comm::Request broadcast(void* buffer, std::size_t count, comm::DataType type, int root,
                          const comm::Group& group) override;
  // NCCL progresses on its own; the turn the engine gives between compute stages raises a recorded failure
  // early (PeerError).
  void progress() override { context_.check_failed(); }

 private:
  class Pending;
  // One enqueueing step of an operation: `enqueue` issues NCCL calls on `comm` (and CUDA work) on the given
  // stream and returns the NCCL result; the next step is issued once `comm` has enqueued them.
  struct Phase {
    ncclComm_t comm = nullptr;
    std::function<ncclResult_t(cudaStream_t)> enqueue;
  };
  comm::Request launch(const std::string& what, const std::vector<Phase>& phases);
  // The communicator of `group` (made on first use: collective over the group).
  ncclComm_t communicator(const comm::Group& group);
  // Polls until `comm` has enqueued what it was given; errors and the timeout fail.
  void wait_enqueued(ncclComm_t comm, const std::string& what);

  int device_;
  cudaStream_t compute_stream_;
  NcclContext context_;  // first: outlives everything that calls NCCL
  Stream comm_stream_;
  Event ready_;
  std::vector<std::unique_ptr<NcclCommunicator>> communicators_;  // in creation order, the same on every rank
  // Topology::intra_node_reduce and inter_node_reduce -> intra_node and inter_node: their own MPI
  // communicators keep MPI's lazily started stages apart; NCCL enqueues both stages of an operation at
  // once, in program order on one stream, so they share the NCCL communicators of the gather.
  std::vector<std::pair<MPI_Comm, MPI_Comm>> aliases_;
  std::optional<NcclWatchdog> watchdog_;  // started once the communicators of the constructor are made
};

}  // namespace mics::backends::cuda
