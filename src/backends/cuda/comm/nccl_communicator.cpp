// NcclContext and NcclCommunicator: owned NCCL communicators from the MPI groups, and the shared state that
// serialises NCCL calls and aborts them all at the first failure.
#include "mics/backends/cuda/nccl_communicator.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <system_error>
#include <thread>
#include <utility>

#include "mics/util/error.hpp"

namespace mics::backends::cuda {

using Clock = std::chrono::steady_clock;

void nccl_failed(const char* file, int line, const char* call, ncclResult_t result) {
  throw PeerError(std::string("NCCL error at ") + file + ":" + std::to_string(line) + ": " + call + ": " +
                  ncclGetErrorString(result));
}

void terminate_with(const std::string& reason) {
  std::fprintf(stderr, "mics: error: %s\n", reason.c_str());
  std::fflush(stderr);
  std::terminate();
}

ncclResult_t nccl_state(ncclComm_t comm) {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm, &state);
  return rc != ncclSuccess ? rc : state;
}

bool is_nccl_error(ncclResult_t state) { return state != ncclSuccess && state != ncclInProgress; }

std::string describe_nccl_error(ncclResult_t state, ncclComm_t comm) {
  std::string text = ncclGetErrorString(state);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
  return text;
}

std::string milliseconds_text(std::chrono::milliseconds time) { return std::to_string(time.count()) + " ms"; }

// --- the context ---------------------------------------------------------------------------------------------

NcclContext::NcclContext(int world_rank, NcclOptions options) : world_rank_(world_rank), options_(std::move(options)) {
  if (!options_.on_unrecoverable) options_.on_unrecoverable = [](const std::string& reason) { terminate_with(reason); };
}

NcclContext::~NcclContext() { await_aborts(); }

void NcclContext::add_locked(ncclComm_t comm) { live_.push_back(comm); }

void NcclContext::remove_locked(ncclComm_t comm) { live_.erase(std::remove(live_.begin(), live_.end(), comm), live_.end()); }

void NcclContext::check_failed() {
  if (!failed()) return;
  raised_ = true;
  throw PeerError(failure_);  // final once failed_ is set: no lock (the watchdog may hold it)
}

void NcclContext::fail(const std::string& message, ncclComm_t also_abort) {
  {
    auto held = lock();
    if (also_abort != nullptr) abort_unheld_locked(also_abort);
    record_failure_locked(message);
  }
  raised_ = true;
  throw PeerError(failure_);
}

void NcclContext::record_failure_locked(const std::string& message) {
  if (!failed_) {
    failure_ = message;
    // Before any abort: the abort ends the stuck kernels, and a host thread that then sees its operation
    // complete must find the failure, not take the garbage result for a success.
    failed_ = true;
  }
  abort_all_locked();
}

void NcclContext::abort_all_locked() {
  if (aborted_) return;
  aborted_ = true;
  start_aborts_locked(live_);
  live_.clear();  // the abort threads own the handles now
}

void NcclContext::abort_unheld_locked(ncclComm_t comm) { start_aborts_locked({comm}); }

// ncclCommAbort blocks until its communicator's device work has drained, and with one comm stream that work
// can sit behind another communicator's stuck kernel, which only that communicator's abort ends: the aborts
// run together, one thread each, and the caller (who holds the lock) does not wait for them, so the main
// thread's error and the watchdog's last resort still run. No other NCCL call is made meanwhile: aborted_
// gates every one. The threads hold only the handle and a shared count that await_aborts() watches.
void NcclContext::start_aborts_locked(const std::vector<ncclComm_t>& comms) {
  for (ncclComm_t comm : comms) {
    aborts_running_->fetch_add(1);
    try {
      std::thread([comm, running = aborts_running_] {
        ncclCommAbort(comm);
        running->fetch_sub(1);
      }).detach();
    } catch (const std::system_error& e) {
      // No thread to be had. An abort here could wait, holding the lock, for a kernel only another abort
      // ends, with the watchdog locked out: end the process instead.
      aborts_running_->fetch_sub(1);
      last_resort("cannot start a thread to abort an NCCL communicator (" + std::string(e.what()) + ")");
    }
  }
}

void NcclContext::await_aborts() const {
  const Clock::time_point deadline = Clock::now() + options_.exit_grace;
  while (aborts_running_->load() > 0) {
    if (Clock::now() > deadline) {
      last_resort("aborting the NCCL communicators took over " + milliseconds_text(options_.exit_grace));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void NcclContext::last_resort(const std::string& reason) const {
  const std::string message = "rank " + std::to_string(world_rank_) + ": " + reason;
  options_.on_unrecoverable(message);
  std::terminate();  // it must not return
}

Clock::time_point NcclContext::finalize_deadline_locked() {
  // Finalize completes when every rank has arrived (a peer may still be writing a checkpoint): the same
  // allowance as an operation, for all communicators together.
  if (!finalize_deadline_) finalize_deadline_ = Clock::now() + options_.timeout;
  return *finalize_deadline_;
}

// --- one communicator -----------------------------------------------------------------------------------------

NcclCommunicator::NcclCommunicator(NcclContext& context, const topology::Group& group)
    : context_(context), group_(group.handle()), kind_(group.kind()) {
  MICS_CHECK(group.valid(), "an NCCL communicator for a group this rank is not in");
  context_.check_failed();
  const std::string what = "NCCL init of the " + std::string(topology::to_string(kind_)) + " communicator";
  ncclUniqueId id{};
  if (group.rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MICS_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, group.handle()));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  // Not yet held by the context (an abort would miss it): handed to fail(), which aborts it too.
  ncclResult_t state = ncclInProgress;
  {
    auto held = context_.lock();
    if (!context_.aborts_started_locked()) state = ncclCommInitRankConfig(&comm, group.size(), id, group.rank(), &config);
  }
  const Clock::time_point start = Clock::now();
  while (state == ncclInProgress) {
    if (context_.failed()) context_.fail(what + " interrupted", comm);
    if (Clock::now() - start > context_.options().init_timeout) {
      context_.fail(what + " did not finish within " + milliseconds_text(context_.options().init_timeout) +
                        " (a peer is missing, or the network is blocked)",
                    comm);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto held = context_.lock();
    if (!context_.aborts_started_locked()) state = nccl_state(comm);  // else the next turn gives up
  }
  if (state != ncclSuccess) context_.fail(what + " failed: " + describe_nccl_error(state, comm), comm);
  {
    auto held = context_.lock();
    if (!context_.aborts_started_locked()) {
      context_.add_locked(comm);
      comm_ = comm;
      return;
    }
    context_.abort_unheld_locked(comm);  // the others were aborted while this one was made
  }
  context_.fail(what + " interrupted: the communicators are being aborted");
}

NcclCommunicator::~NcclCommunicator() {
  auto held = context_.lock();
  if (context_.aborts_started_locked()) return;  // an abort thread owns the handle
  if (std::uncaught_exceptions() > 0) {
    context_.abort_all_locked();
    return;
  }
  const Clock::time_point deadline = context_.finalize_deadline_locked();
  ncclResult_t state = ncclCommFinalize(comm_);
  while (state == ncclInProgress && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    state = nccl_state(comm_);
  }
  if (state == ncclSuccess) {
    ncclCommDestroy(comm_);
    context_.remove_locked(comm_);
    return;
  }
  const std::string why = state == ncclInProgress
                              ? "did not finalize within " + milliseconds_text(context_.options().timeout)
                              : "failed to finalize: " + describe_nccl_error(state, comm_);
  std::fprintf(stderr, "mics: rank %d: the NCCL %s communicator %s; aborting it and those not finalized yet\n",
               context_.world_rank(), std::string(topology::to_string(kind_)).c_str(), why.c_str());
  std::fflush(stderr);
  context_.abort_all_locked();
}

}  // namespace mics::backends::cuda
