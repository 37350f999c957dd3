// The GPU harness under mpirun: every rank runs every case; the job passes only if every rank passed, and
// every rank exits 77 (skip) when any rank sees no CUDA device.
#pragma once
#include <mpi.h>

#include "harness.hpp"
#include "mics/log/log.hpp"

namespace mics::cuda_test {

inline int run_mpi_tests(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  log::init(rank);
  log::configure({log::Severity::warning, false, ""});
  int missing = backends::cuda::device_count() == 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &missing, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (missing) {
    if (rank == 0) std::printf("SKIP: no CUDA device is visible\n");
    MPI_Finalize();
    return kSkip;
  }
  int failed = 0;
  for (const Case& c : cases()) {
    const int before = failures();
    try {
      c.run();
    } catch (const std::exception& e) {
      check(false, "exception", c.name, 0, e.what());
    }
    int case_failed = failures() != before ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &case_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) std::printf("%s %s\n", case_failed ? "FAIL" : "ok  ", c.name);
    failed += case_failed;
  }
  MPI_Finalize();
  return failed == 0 ? 0 : 1;
}

}  // namespace mics::cuda_test
