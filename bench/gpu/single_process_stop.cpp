// error.hpp's two ways to stop, for a single process without MPI (the GPU benchmark built with CUDA alone):
// there are no peers to release, so both print the reason and exit with the code.
#include <cstdio>
#include <cstdlib>

#include "mics/util/error.hpp"

namespace mics {

void fatal_all(std::string_view message, int code) {
  std::fprintf(stderr, "error: %.*s\n", static_cast<int>(message.size()), message.data());
  std::exit(code);
}

void fatal_one(std::string_view message, int code) { fatal_all(message, code); }

}  // namespace mics
