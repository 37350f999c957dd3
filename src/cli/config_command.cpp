// mics config: the effective configuration of a deck, every key included, as a deck that runs again.
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"

namespace mics::cli {

int config_command(const Args& args) {
  CommandSpec spec("mics config", "mics config [--deck FILE] [--section.key=value ...]",
                   "Prints every key with its effective value (defaults included) and its meaning, as a deck\n"
                   "that `mics train --deck` accepts. Without --deck it prints the defaults.");
  spec.takes_deck();
  const ParsedCommand command_line = spec.parse(args);
  if (command_line.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  MpiSession mpi;
  const config::Options options = load_options(command_line);
  if (mpi.rank() == 0) std::cout << options.effective_deck << std::flush;
  return kExitOk;
}

}  // namespace mics::cli
