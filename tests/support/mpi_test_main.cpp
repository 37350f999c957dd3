// Catch2 main for tests that run under mpirun: every rank runs the same cases; the job passes only if
// every rank passed. Ranks other than 0 report failures only, so the console stays readable.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include "catch.hpp"

#include "mics/log/log.hpp"

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  mics::log::init(rank);
  mics::log::configure({mics::log::Severity::warning, false, ""});

  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) {
    MPI_Finalize();
    return rc;
  }
  const int failed = session.run();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed ? 1 : 0;
}
