#include "stop.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "mics/log/log.hpp"

namespace mics::cli {

namespace {

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

int world_rank() {
  int rank = 0;
  if (mpi_active()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

[[noreturn]] void abort_with(std::string_view reason, int status) {
  std::fprintf(stderr, "mics: error on rank %d: %.*s\n", world_rank(), static_cast<int>(reason.size()), reason.data());
  std::fflush(stderr);
  log::flush();
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);
}

}  // namespace

void stop(const Error& error) {
  if (error.scope() == ErrorScope::this_rank) abort_with(error.what(), error.exit_status());
  // Printed straight to stderr as well as the log: the log may not be configured yet.
  if (world_rank() == 0) {
    std::fprintf(stderr, "mics: error: %s\n", error.what());
    std::fflush(stderr);
  }
  log::flush();
  if (mpi_active()) MPI_Finalize();
  std::exit(error.exit_status());
}

void abort_job(std::string_view reason) { abort_with(reason, kExitFailure); }

void install_terminate_handler() {
  std::set_terminate([] {
    std::string reason = "terminated";
    if (const std::exception_ptr current = std::current_exception()) {
      try {
        std::rethrow_exception(current);
      } catch (const std::exception& e) {
        reason = e.what();
      } catch (...) {
        reason = "an unknown exception";
      }
    }
    abort_with(reason, kExitFailure);
  });
}

void exit_now(std::string_view reason) {
  // No MPI call here: this may run on a thread other than the one that initialised MPI.
  std::fprintf(stderr, "mics: error: %.*s: exiting\n", static_cast<int>(reason.size()), reason.data());
  std::fflush(stderr);
  std::_Exit(kExitFailure);
}

}  // namespace mics::cli
