// mics data: token shards for training (no MPI: run it once, before the job).
#include <iostream>

#include "commands.hpp"
#include "mics/data/commands.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

int data_command_entry(const Args& args) {
  try {
    return data::data_command(args, std::cout);
  } catch (const Error& e) {
    std::cerr << "mics data: error: " << e.what() << '\n';
    return kExitUsage;
  }
}

}  // namespace mics::cli
