// SIGUSR1 and SIGTERM (Slurm's warning before the time limit, or a user's request) as a flag the run loop
// reads at step boundaries: the handlers only record the signal. RAII: the previous handlers come back on
// destruction. At most one instance at a time.
#pragma once
#include <signal.h>

namespace mics::training {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int received() const;  // the last stop signal received, 0 if none
  static const char* name(int signal_number);

 private:
  struct sigaction previous_usr1_ {};
  struct sigaction previous_term_ {};
};

}  // namespace mics::training
