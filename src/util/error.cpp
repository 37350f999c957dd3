// The formatting half of error.hpp: needs no MPI, so the model builds for single-process tools (the GPU
// benchmark) that provide their own fatal_one. How the job stops is in stop.cpp.
#include "mics/util/error.hpp"

#include <sstream>

namespace mics::detail {

void check_failed(const char* file, int line, const char* expr, const std::string& message) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << expr << ": " << message;
  fatal_one(os.str());
}

}  // namespace mics::detail
