// The MPI-free half of error.hpp (MICS_MPI_CHECK's formatting lives with the MPI code in comm).
#include "mics/util/error.hpp"

#include <sstream>

namespace mics {

void throw_error(ErrorKind kind, const std::string& message, ErrorScope scope) {
  switch (kind) {
    case ErrorKind::input: throw InputError(message, scope);
    case ErrorKind::failure: throw PeerError(message, scope);
    case ErrorKind::internal: throw InternalError(message, scope);
    case ErrorKind::checkpoint: throw CheckpointError(message, scope);
  }
  throw InternalError(message, scope);
}

namespace detail {
void check_failed(const char* file, int line, const char* expr, const std::string& message) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << expr << ": " << message;
  throw InternalError(os.str());
}
}  // namespace detail

}  // namespace mics
