// comm::Collectives on device memory with NCCL, one rank per GPU.
//
// One NCCL communicator per MiCS group (world, partition, replication, intra- and inter-node), made from
// the group's MPI communicator: rank 0 of the group creates the unique id and broadcasts it over MPI.
// Communicators are non-blocking (ncclConfig_t blocking = 0): every init and enqueue is polled with
// ncclCommGetAsyncError under a timeout.
//
// Ordering: collectives run on a dedicated communication stream. Issuing one records an event on the
// compute stream that the communication stream waits on (the data is ready); completing one (wait(), or
// test() returning true) makes the compute stream wait on an event recorded after the collective. So a
// non-blocking gather of the next unit overlaps the current unit's compute, and no host thread blocks.
// Blocking calls also wait on the host before returning.
//
// Failure: a watchdog thread polls every in-flight collective; on an asynchronous NCCL error, or one not
// finished within the timeout, it aborts every communicator (ncclCommAbort) and the job (MPI_Abort) with a
// message, so a dead peer never hangs the job.
//
// Buffers in host memory (the engine's scalars: loss and gradient-norm sums) and barriers go to the `host`
// collectives (MPI) unchanged. Traffic counters are recorded on the comm::Communicator as MpiCollectives
// records them (analytic ring bytes).
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mics/backends/cuda/raii.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/topology/topology.hpp"

namespace mics::backends::cuda {

[[noreturn]] void nccl_failed(const char* file, int line, const char* call, ncclResult_t result);

}  // namespace mics::backends::cuda

// For calls that must succeed outright (ncclGetUniqueId, ncclGetVersion); enqueues on non-blocking
// communicators may also answer ncclInProgress and go through NcclCollectives instead.
#define NCCL_CHECK(call)                                                                       \
  do {                                                                                         \
    const ncclResult_t mics_nccl_rc_ = (call);                                                 \
    if (mics_nccl_rc_ != ncclSuccess)                                                          \
      ::mics::backends::cuda::nccl_failed(__FILE__, __LINE__, #call, mics_nccl_rc_);           \
  } while (0)

namespace mics::backends::cuda {

struct NcclOptions {
  // A communicator init, or a collective, not finished after this long aborts the job.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  std::chrono::milliseconds watchdog_period = std::chrono::milliseconds(20);
};

// ncclDataType_t / ncclRedOp_t of the comm enums (average is ncclAvg).
ncclDataType_t nccl_type(comm::DataType type);
ncclRedOp_t nccl_op(comm::ReduceOp op);
// true for device (or managed) memory, false for host memory of any kind.
bool is_device_pointer(const void* ptr);
// Both buffers on the device (true) or both on the host (false); a mix throws mics::Error (a caller bug).
bool device_buffers(const void* send, const void* recv);

class NcclCollectives final : public comm::Collectives {
 public:
  // Collective over every valid communicator of `topology`. `device` is the GPU of this rank (the
  // backend's), `compute_stream` the backend's stream.
  NcclCollectives(topology::Topology& topology, int device, cudaStream_t compute_stream, comm::Collectives& host,
                  const NcclOptions& options = {});
  ~NcclCollectives() override;
  NcclCollectives(const NcclCollectives&) = delete;
  NcclCollectives& operator=(const NcclCollectives&) = delete;

  void all_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                  comm::Communicator& comm) override;
  comm::Request iall_gather(const void* send, void* recv, std::size_t count, comm::DataType type,
                            comm::Communicator& comm) override;
  // Inter-node stage: grouped ncclSend/ncclRecv straight into the slots (j*L + l); intra-node stage: J
  // in-place all-gathers (one per inter-node block) in one ncclGroupStart/End.
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

  cudaStream_t comm_stream() const { return comm_stream_.get(); }
  cudaStream_t compute_stream() const { return compute_stream_; }
  // The NCCL communicator of `comm` (created on first use: collective over `comm`).
  ncclComm_t nccl_comm(comm::Communicator& comm);

 private:
  struct InFlight {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point start;
    std::string what;
    std::vector<ncclComm_t> comms;
  };
  class Pending;
  template <class Enqueue>
  comm::Request launch(std::string what, std::vector<ncclComm_t> comms, bool blocking, Enqueue&& enqueue);
  ncclComm_t create(const comm::Communicator& comm);
  // Polls until `comm` has no operation being enqueued; errors and the timeout abort the job.
  void wait_ready(ncclComm_t comm, const std::string& what);
  void check_async(ncclComm_t comm, const std::string& what);
  [[noreturn]] void fail(const std::string& message);
  void watchdog_loop();

  int device_;
  cudaStream_t compute_stream_;
  comm::Collectives& host_;
  NcclOptions options_;
  Stream comm_stream_;
  Event ready_;
  std::vector<std::pair<MPI_Comm, ncclComm_t>> comms_;

  std::mutex mutex_;                 // guards in_flight_ and comms_ reads by the watchdog
  std::vector<InFlight> in_flight_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> aborted_{false};
  std::thread watchdog_;
};

}  // namespace mics::backends::cuda
