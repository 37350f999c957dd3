// mics config: the effective configuration of a deck, every key included, as a deck that runs again.
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"

namespace mics::cli {

int config_command(const Args& args) {
  const CommandLine command_line = split_command_line(args);
  if (command_line.help) {
    std::fputs(
        "usage: mics config [--deck FILE] [--section.key=value ...]\n"
        "\n"
        "Prints every key with its effective value (defaults included) and its meaning, as a deck\n"
        "that `mics train --deck` accepts. Without --deck it prints the defaults.\n",
        stdout);
    return kExitOk;
  }
  MpiSession mpi;
  if (!command_line.rest.empty())
    throw InputError("mics config: unexpected argument '" + command_line.rest.front() + "'", ErrorScope::all_ranks);
  const config::Options options = load_options(command_line);
  if (mpi.rank() == 0) std::cout << options.effective_deck << std::flush;
  return kExitOk;
}

}  // namespace mics::cli
