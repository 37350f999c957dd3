// How an MPI job stops (error.hpp): every rank cleanly with the same code, or one rank aborting the world.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics {

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
}  // namespace

void fatal_all(std::string_view message, int code) {
  // Printed straight to stderr as well as the log: the log may not be configured yet.
  if (world_rank() == 0) {
    std::fprintf(stderr, "mics: error: %.*s\n", static_cast<int>(message.size()), message.data());
    std::fflush(stderr);
  }
  log::flush();
  if (mpi_active()) MPI_Finalize();
  std::exit(code);
}

void fatal_one(std::string_view message, int code) {
  std::fprintf(stderr, "mics: error on rank %d: %.*s\n", world_rank(), static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
  log::flush();
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

namespace detail {
void mpi_failed(const char* file, int line, const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  std::ostringstream os;
  os << file << ":" << line << ": " << call << " failed: " << text;
  fatal_one(os.str());
}
}  // namespace detail

}  // namespace mics
