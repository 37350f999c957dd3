// comm::Collectives on device memory with NCCL, one rank per GPU.
//
// One NCCL communicator per MiCS group (partition, replication, intra- and inter-node at construction; the
// world only if a device-memory collective over it is issued), made from the group's MPI communicator:
// rank 0 of the group creates the unique id and broadcasts it over MPI.
// Communicators are non-blocking (ncclConfig_t blocking = 0): every init and enqueue is polled with
// ncclCommGetAsyncError under a timeout.
//
// Ordering: collectives run on a dedicated communication stream. Issuing one records an event on the
// compute stream that the communication stream waits on (the data is ready); completing one (wait(), or
// test() returning true) makes the compute stream wait on an event recorded after the collective. So a
// non-blocking gather of the next unit overlaps the current unit's compute, and no host thread blocks.
// Blocking calls also wait on the host (polling, under the timeout) before returning.
//
// Failure: a watchdog thread polls every in-flight collective; on an asynchronous NCCL error, or one not
// finished within the timeout, it records the error and aborts every communicator (ncclCommAbort, all at
// once on threads nobody waits for: one abort can wait for another communicator's stuck kernel), which
// ends the stuck kernels so a host thread blocked on a stream returns. It calls no MPI (MPI runs with
// MPI_THREAD_FUNNELED: only the main thread may). The main thread raises the recorded error as mics::Error
// at its next call into these collectives (issuing, test(), a blocking wait, even a host-memory or barrier
// call), and the one-rank fatal path (fatal_one: MPI_Abort from the main thread) ends the job. Only if the
// main thread does not get there within NcclOptions::exit_grace (blocked in an MPI call on a peer that will
// never come) does the watchdog end the process itself. Errors seen by the main thread throw the same way.
// NCCL calls are not thread-safe across the communicators of one device: the watchdog and the main thread
// take turns on a mutex for every NCCL call. The aborts run together on threads of their own (one abort
// can wait for another communicator's stuck kernel); once they start, no other NCCL call is made.
//
// Semantics as MpiCollectives, except ReduceOp::average, which is ncclAvg (each input multiplied by 1/n,
// then summed): equal to MPI's sum / n when n is a power of two, within rounding otherwise.
//
// Buffers in host memory (the engine's scalars: loss and gradient-norm sums) and barriers go to the `host`
// collectives (MPI) unchanged. Traffic counters are recorded on the comm::Communicator as MpiCollectives
// records them (analytic ring bytes).
#pragma once
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <functional>
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
  // A collective (or its enqueueing, or the communicators' finalize at the end) not finished this long
  // after it was issued is an error of this rank.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // The same for a communicator init (all ranks of the group must arrive).
  std::chrono::milliseconds init_timeout = std::chrono::minutes(10);
  std::chrono::milliseconds watchdog_period = std::chrono::milliseconds(20);
  // After the communicators were aborted, how long the main thread has to raise the error before the
  // watchdog ends the process (exit status 1, the reason on stderr); and how long the aborts may take.
  std::chrono::milliseconds exit_grace = std::chrono::minutes(1);
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


 private:
  struct InFlight {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point start;
    std::string what;
    std::vector<ncclComm_t> comms;
  };
  // One enqueueing step of a collective: `enqueue` issues NCCL calls on `comm` (and CUDA work) on the
  // given stream and returns the NCCL result; the next step is issued once `comm` has enqueued them.
  struct Phase {
    ncclComm_t comm = nullptr;  // nullptr: CUDA work only
    std::function<ncclResult_t(cudaStream_t)> enqueue;
  };
  class Pending;
  comm::Request launch(const std::string& what, const std::vector<Phase>& phases, bool blocking);
  comm::Request all_gather_on(const void* send, void* recv, std::size_t count, comm::DataType type,
                              comm::Communicator& comm, bool blocking);
  comm::Request hierarchical_on(const void* send, void* recv, std::size_t count, comm::DataType type,
                                comm::Communicator& inter_node, comm::Communicator& intra_node, bool blocking);
  comm::Request reduce_scatter_on(const void* send, void* recv, std::size_t count, comm::DataType type,
                                  comm::ReduceOp op, comm::Communicator& comm, bool blocking);
  comm::Request all_reduce_on(const void* send, void* recv, std::size_t count, comm::DataType type,
                              comm::ReduceOp op, comm::Communicator& comm, bool blocking);
  comm::Request broadcast_on(void* buffer, std::size_t count, comm::DataType type, int root,
                             comm::Communicator& comm, bool blocking);
  // The NCCL communicator of `comm` (created on first use: collective over `comm`).
  ncclComm_t nccl_comm(comm::Communicator& comm);
  ncclComm_t create(const comm::Communicator& comm);
  // check_failed(), then device_buffers(send, recv).
  bool on_device(const void* send, const void* recv);
  // Polls until `comm` has enqueued what it was given; errors and the timeout fail.
  void wait_ready(ncclComm_t comm, const std::string& what);
  // Host wait for `done` (a blocking collective), raising failures and the timeout.
  void block(const Event& done, const std::string& what);
  // Main thread: throws the recorded failure as mics::Error once the communicators were aborted.
  void check_failed() const;
  // Records `message` (the first failure is kept) and starts aborting every communicator, once, without
  // waiting for the aborts. Holds mutex_.
  void abort_locked(const std::string& message);
  // ncclCommAbort of each, all at once on threads of their own (counted in aborts_running_).
  void start_aborts(const std::vector<ncclComm_t>& comms);
  // Waits (at most exit_grace, then ends the process) until every abort started has returned.
  void await_aborts() const;
  // Destructor: finalize and destroy each communicator in turn; abort the rest at the first that fails.
  void finalize_locked();
  // Main thread: abort_locked, then throw the first failure.
  [[noreturn]] void fail(const std::string& message);
  void watchdog_loop();
  void await_main_thread();

  int device_;
  int world_rank_;
  cudaStream_t compute_stream_;
  comm::Collectives& host_;
  NcclOptions options_;
  Stream comm_stream_;
  Event ready_;
  std::vector<std::pair<MPI_Comm, ncclComm_t>> comms_;  // written by the main thread under mutex_

  // Every NCCL call on comms_ (either thread), in_flight_, failure_ and aborted_.
  mutable std::mutex mutex_;
  std::vector<InFlight> in_flight_;
  std::string failure_;
  bool aborted_ = false;
  std::atomic<bool> failed_{false};  // failure_ is set (the communicators are being or have been aborted)
  mutable bool raised_ = false;      // the main thread has thrown the failure (main thread only)
  std::atomic<bool> stop_{false};
  std::shared_ptr<std::atomic<int>> aborts_running_ = std::make_shared<std::atomic<int>>(0);
  std::thread watchdog_;
};

}  // namespace mics::backends::cuda
