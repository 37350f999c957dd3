// NCCL on device memory comes in three parts:
//   NcclCommunicator (here): one owned NCCL communicator per MiCS group, made from the group's MPI
//     communicator, and the NcclContext that all communicators of one transport share;
//   NcclWatchdog (nccl_watchdog.hpp): the thread that turns a dead peer into an error instead of a hang;
//   NcclTransport (nccl_transport.hpp): the operations, and their ordering against the compute stream.
//
// Communicators are non-blocking (ncclConfig_t blocking = 0): every init and enqueue is polled with
// ncclCommGetAsyncError under a timeout.
//
// Failure. The first failure (an NCCL error, a timeout, seen by the main thread or by the watchdog) is
// recorded in the NcclContext, and every communicator of the context is aborted: ncclCommAbort, all at once
// on detached threads that nobody waits for, because one abort can wait for another communicator's stuck
// kernel (one comm stream serves them all). Aborting ends the stuck kernels, so a host thread blocked on a
// stream returns. Once the aborts started, no other NCCL call is made. The main thread raises the recorded
// failure as PeerError at its next call into the transport (issuing an operation, progress(), or a
// Request's test() or wait()); the error then travels to the mics command, which ends the job. Only if the main thread does not
// get there within NcclOptions::exit_grace (it is blocked in an MPI call on a peer that will never come) does
// the watchdog call NcclOptions::on_unrecoverable, which ends the process: the watchdog may make no MPI call
// (MPI runs with MPI_THREAD_FUNNELED), and exiting without MPI_Finalize makes the launcher end the job.
// NCCL calls are not thread-safe across the communicators of one device: the main thread and the watchdog
// take turns on the context's mutex for every NCCL call. The process never exits while an abort runs
// (NCCL would be torn down under it): the transport, and the context, wait for the aborts they started,
// at most exit_grace, then take the last resort.
#pragma once
#include <mpi.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mics/backends/transport.hpp"
#include "mics/topology/group.hpp"

namespace mics::backends::cuda {

// Throws PeerError naming the call, the file and the line, and NCCL's error string.
[[noreturn]] void nccl_failed(const char* file, int line, const char* call, ncclResult_t result);

}  // namespace mics::backends::cuda

// For calls that must succeed outright (ncclGetUniqueId, ncclGetVersion); enqueues on non-blocking
// communicators may also answer ncclInProgress and are polled by the transport instead.
#define NCCL_CHECK(call)                                                                       \
  do {                                                                                         \
    const ncclResult_t mics_nccl_rc_ = (call);                                                 \
    if (mics_nccl_rc_ != ncclSuccess)                                                          \
      ::mics::backends::cuda::nccl_failed(__FILE__, __LINE__, #call, mics_nccl_rc_);           \
  } while (0)

namespace mics::backends::cuda {

// The default last resort: prints "mics: error on rank R: <reason>" to stderr and calls std::terminate.
// The mics command passes its own (make_data_transport's on_unrecoverable).
[[noreturn]] void terminate_with(const std::string& reason);

struct NcclOptions {
  // An operation (or its enqueueing, or the communicators' finalize at the end) not finished this long
  // after it was issued is an error of this rank.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // The same for a communicator init (all ranks of the group must arrive).
  std::chrono::milliseconds init_timeout = std::chrono::minutes(10);
  std::chrono::milliseconds watchdog_period = std::chrono::milliseconds(20);
  // After the communicators were aborted, how long the main thread has to raise the error before the
  // last resort; and how long the aborts may take.
  std::chrono::milliseconds exit_grace = std::chrono::minutes(1);
  // The last resort (see LastResort): ends the process with `reason`. Called from the watchdog thread, or
  // from the main thread when it cannot raise the failure any more. Must make no MPI call.
  LastResort on_unrecoverable = [](const std::string& reason) { terminate_with(reason); };
};

// The communicator's state: success, in progress (still enqueueing or initialising) or an error.
ncclResult_t nccl_state(ncclComm_t comm);
bool is_nccl_error(ncclResult_t state);  // neither success nor in progress
// NCCL's error string, and its last error message for `comm` when it has one.
std::string describe_nccl_error(ncclResult_t state, ncclComm_t comm);
std::string milliseconds_text(std::chrono::milliseconds time);  // "600000 ms"

// What the communicators, the operations and the watchdog of one transport share: the mutex every NCCL
// call holds, the live communicators, the first failure, and the aborts. Thread-safe where marked; the
// *_locked members need the lock held.
class NcclContext {
 public:
  NcclContext(int world_rank, NcclOptions options);
  // Waits for the aborts started (at most exit_grace, then the last resort).
  ~NcclContext();
  NcclContext(const NcclContext&) = delete;
  NcclContext& operator=(const NcclContext&) = delete;

  const NcclOptions& options() const { return options_; }
  int world_rank() const { return world_rank_; }

  // Held for every NCCL call, by either thread. After aborts_started_locked() no NCCL call is made.
  [[nodiscard]] std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }
  bool aborts_started_locked() const { return aborted_; }

  // The communicators an abort must reach.
  void add_locked(ncclComm_t comm);
  void remove_locked(ncclComm_t comm);  // once destroyed

  // Thread-safe: a failure was recorded (the communicators are being, or have been, aborted).
  bool failed() const { return failed_.load(); }
  // The first failure: final once failed() is true, and read without the lock then.
  const std::string& failure() const { return failure_; }
  // Main thread: whether it has thrown the failure.
  bool raised() const { return raised_; }
  // Main thread: throws the recorded failure as PeerError, if there is one.
  void check_failed();
  // Main thread: records `message` (unless a failure came first), aborts every communicator, and throws
  // the first failure as PeerError. `also_abort`: a communicator not yet added (an init that failed).
  [[noreturn]] void fail(const std::string& message, ncclComm_t also_abort = nullptr);
  // Either thread: the same without throwing.
  void record_failure_locked(const std::string& message);
  // Aborts every live communicator, once, without waiting (at shutdown: nothing failed, but a peer did not
  // finalize, or this rank is unwinding an error).
  void abort_all_locked();
  // ncclCommAbort of a communicator the context does not hold (it was made while the others were aborted).
  void abort_unheld_locked(ncclComm_t comm);
  // Waits until every abort started has returned; past exit_grace, the last resort.
  void await_aborts() const;
  // options().on_unrecoverable(reason), then std::terminate should it return.
  [[noreturn]] void last_resort(const std::string& reason) const;

  // The deadline of the finalizes at shutdown: one for all communicators, set by the first to finalize.
  std::chrono::steady_clock::time_point finalize_deadline_locked();

 private:
  // ncclCommAbort of each, all at once on detached threads (counted in aborts_running_).
  void start_aborts_locked(const std::vector<ncclComm_t>& comms);

  int world_rank_;
  NcclOptions options_;
  std::mutex mutex_;
  std::vector<ncclComm_t> live_;  // under mutex_
  bool aborted_ = false;          // under mutex_
  std::string failure_;           // written under mutex_ before failed_ is set, never after
  std::atomic<bool> failed_{false};
  bool raised_ = false;  // main thread only
  std::optional<std::chrono::steady_clock::time_point> finalize_deadline_;
  // Shared with the abort threads, which may outlive the context.
  std::shared_ptr<std::atomic<int>> aborts_running_ = std::make_shared<std::atomic<int>>(0);
};

// One NCCL communicator over the members of an MPI group, owned: finalized and destroyed with this object,
// or handed to an abort thread. Aborting goes through the context: all of a transport's communicators at
// once. Neither copied nor moved (the context holds its handle).
class NcclCommunicator {
 public:
  // Collective over `group` (the calling thread must be the one that makes MPI calls, and every member
  // must call it at the same point): rank 0 of the group makes the unique id and broadcasts it over the
  // group's MPI communicator; the init is polled under options().init_timeout. On failure (an NCCL error,
  // the timeout, or a failure recorded meanwhile) every communicator of `context` is aborted and
  // PeerError thrown. The CUDA device must be set on the calling thread.
  NcclCommunicator(NcclContext& context, const topology::Group& group);
  // A rank unwinding an error (this rank's, or one every rank raised) aborts: its peers may never finalize
  // with it. Otherwise the communicator is finalized (which waits for its issued work, and for every peer
  // to arrive), polled and destroyed, under the context's finalize deadline; if it is not done by then or
  // fails, it and every communicator not yet finalized are aborted, with a message. Nothing is done when
  // the aborts already started (an abort thread owns the handle). Destroy the communicators of a context
  // in the same order on every rank.
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  ncclComm_t get() const { return comm_; }
  MPI_Comm group_handle() const { return group_; }  // the MPI communicator it was made from
  topology::GroupKind kind() const { return kind_; }

 private:
  NcclContext& context_;
  MPI_Comm group_;
  topology::GroupKind kind_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace mics::backends::cuda
