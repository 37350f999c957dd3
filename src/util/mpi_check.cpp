// MICS_MPI_CHECK's failure path: the MPI error string, as a PeerError of this rank.
#include <mpi.h>

#include <sstream>

#include "mics/util/error.hpp"

namespace mics::detail {

void mpi_failed(const char* file, int line, const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  std::ostringstream os;
  os << file << ":" << line << ": " << call << " failed: " << text;
  throw PeerError(os.str());
}

}  // namespace mics::detail
