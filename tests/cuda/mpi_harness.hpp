// The GPU harness under mpirun: every rank runs every case (or those whose name contains argv[1]); a case
// fails if it failed on any rank, and is skipped if it was skipped on any rank (SKIP_CASE: every rank must
// decide alike, or a rank that runs on waits for the others). Exit status: 1 if a case failed; 77 (skip) when
// any rank sees no CUDA device, or when a case was skipped; 0 only when every case ran and passed.
#pragma once
#include <mpi.h>

#include <string>

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
  const std::string filter = argc > 1 ? argv[1] : "";
  int failed = 0, skipped = 0;
  for (const Case& c : cases()) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    const int before = failures();
    std::string skip_reason;
    try {
      c.run();
    } catch (const Skipped& s) {
      skip_reason = s.reason;
    } catch (const std::exception& e) {
      check(false, "exception", c.name, 0, e.what());
    }
    int outcome[2] = {failures() != before ? 1 : 0, skip_reason.empty() ? 0 : 1};  // failed, skipped
    MPI_Allreduce(MPI_IN_PLACE, outcome, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (outcome[0]) {
      if (rank == 0) std::printf("FAIL %s\n", c.name);
      ++failed;
    } else if (outcome[1]) {
      if (rank == 0) std::printf("SKIP %s%s%s\n", c.name, skip_reason.empty() ? "" : ": ", skip_reason.c_str());
      ++skipped;
    } else if (rank == 0) {
      std::printf("ok   %s\n", c.name);
    }
  }
  MPI_Finalize();
  if (failed != 0) return 1;
  return skipped == 0 ? 0 : kSkip;
}

}  // namespace mics::cuda_test
