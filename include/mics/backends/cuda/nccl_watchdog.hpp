// The thread that turns a dead or stuck peer into an error instead of a hang (the failure handling as a
// whole: nccl_communicator.hpp).
//
// Every NcclOptions::watchdog_period it polls the operations in flight, oldest first: an operation whose
// event completed is dropped; a CUDA error on its event, an asynchronous NCCL error on one of its
// communicators, or an operation not finished within NcclOptions::timeout of its issue is a failure. The
// first failure is recorded in the NcclContext, which starts aborting every communicator; the watchdog
// prints it and stops polling. Then it gives the main thread exit_grace to raise the failure and destroy
// the transport (which stops the watchdog); past that, the last resort (NcclOptions::on_unrecoverable).
// It makes no MPI call (MPI runs FUNNELED), and every NCCL call it makes holds the context's lock.
#pragma once
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mics/backends/cuda/nccl_communicator.hpp"
#include "mics/backends/cuda/raii.hpp"

namespace mics::backends::cuda {

class NcclWatchdog {
 public:
  // Starts the thread, which makes `device` current on itself. Throws PeerError when no thread can be had.
  NcclWatchdog(NcclContext& context, int device);
  ~NcclWatchdog();  // stop()
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  // Ends the thread and waits for it (idempotent). After it only the main thread calls NCCL.
  void stop();

  // Main thread: an operation issued on `comms`, complete once `done` (recorded after it) is; `what` names it
  // in the failure.
  void watch(std::shared_ptr<Event> done, std::string what, std::vector<ncclComm_t> comms);

 private:
  struct InFlight {
    std::shared_ptr<Event> done;
    std::chrono::steady_clock::time_point start;
    std::string what;
    std::vector<ncclComm_t> comms;
  };
  void loop();
  // The failure of the oldest operation that failed; empty when none did. Holds the context's lock.
  std::string poll_locked();
  void await_main_thread();

  NcclContext& context_;
  int device_;
  std::vector<InFlight> in_flight_;  // under the context's lock, in issue order
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: started once the rest is ready
};

}  // namespace mics::backends::cuda
