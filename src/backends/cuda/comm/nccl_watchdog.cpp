// NcclWatchdog: polls the operations in flight, records the first failure, and as a last resort ends the
// process when the main thread cannot raise it.
#include "mics/backends/cuda/nccl_watchdog.hpp"

#include <cuda_runtime.h>

#include <cstdio>
#include <system_error>
#include <utility>

#include "mics/util/error.hpp"

namespace mics::backends::cuda {

using Clock = std::chrono::steady_clock;

NcclWatchdog::NcclWatchdog(NcclContext& context, int device) : context_(context), device_(device) {
  try {
    thread_ = std::thread([this] { loop(); });
  } catch (const std::system_error& e) {
    throw PeerError("cannot start the NCCL watchdog thread: " + std::string(e.what()));
  }
}

NcclWatchdog::~NcclWatchdog() { stop(); }

void NcclWatchdog::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void NcclWatchdog::watch(std::shared_ptr<Event> done, std::string what, std::vector<ncclComm_t> comms) {
  auto held = context_.lock();
  in_flight_.push_back(InFlight{std::move(done), Clock::now(), std::move(what), std::move(comms)});
}

void NcclWatchdog::loop() {
  if (cudaSetDevice(device_) != cudaSuccess) cudaGetLastError();  // event queries work without it
  while (!stop_) {
    std::this_thread::sleep_for(context_.options().watchdog_period);
    if (context_.failed()) break;  // the main thread failed meanwhile: the communicators are gone
    auto held = context_.lock();
    if (context_.aborts_started_locked()) break;
    const std::string failure = poll_locked();
    if (!failure.empty()) {
      context_.record_failure_locked(failure);
      std::fprintf(stderr, "mics: error on rank %d: %s: NCCL communicators aborted\n", context_.world_rank(),
                   failure.c_str());
      std::fflush(stderr);
      break;
    }
  }
  if (context_.failed()) await_main_thread();
}

std::string NcclWatchdog::poll_locked() {
  const Clock::time_point now = Clock::now();
  for (std::size_t i = 0; i < in_flight_.size();) {
    const InFlight& op = in_flight_[i];
    const cudaError_t rc = cudaEventQuery(op.done->get());
    if (rc == cudaSuccess) {
      in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));  // keep issue order
      continue;
    }
    if (rc != cudaErrorNotReady) return op.what + ": CUDA error " + cudaGetErrorString(rc);
    for (ncclComm_t comm : op.comms) {
      const ncclResult_t state = nccl_state(comm);
      if (is_nccl_error(state)) return "NCCL error during " + op.what + ": " + describe_nccl_error(state, comm);
    }
    if (now - op.start > context_.options().timeout) {
      return op.what + " did not finish within " + milliseconds_text(context_.options().timeout) +
             ": a peer is dead or stuck";
    }
    ++i;
  }
  return {};
}

// The main thread raises the failure at its next call into the transport, and the error ends the job. It
// may instead be blocked in an MPI call that a peer never joins (that peer hangs elsewhere): MPI_Abort
// from here would be the way out, but MPI_THREAD_FUNNELED forbids any MPI call from this thread. So the
// last resort ends the process, and the launcher (mpirun, srun) ends the job.
void NcclWatchdog::await_main_thread() {
  const Clock::time_point start = Clock::now();
  while (!stop_) {
    if (Clock::now() - start > context_.options().exit_grace) {
      context_.last_resort(context_.failure() + "; the main thread did not stop within " +
                           milliseconds_text(context_.options().exit_grace));
    }
    std::this_thread::sleep_for(context_.options().watchdog_period);
  }
}

}  // namespace mics::backends::cuda
