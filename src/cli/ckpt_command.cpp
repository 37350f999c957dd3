// mics ckpt list|inspect|verify: look at checkpoints without MPI (one process).
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
constexpr const char* kCkptUsage =
    "usage: mics ckpt list RUN_DIR       checkpoints of a run (<checkpoint.dir>/<run.name>): step,\n"
    "                                    committed or partial, size, and which one `latest` names\n"
    "       mics ckpt inspect PATH       metadata and tensor table of a checkpoint (step_<N> dir or .h5 file)\n"
    "       mics ckpt verify PATH        read every dataset, checking every Fletcher32 checksum\n"
    "\n"
    "Exit status: 0 fine, 1 verify found a bad dataset (each one is named) or could not read the checkpoint,\n"
    "2 bad usage, or list/inspect could not read PATH.\n";
}  // namespace

int ckpt_command(const Args& args) {
  if (args.empty()) {
    std::fputs(kCkptUsage, stderr);
    return kExitUsage;
  }
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(kCkptUsage, stdout);
      return kExitOk;
    }
  }
  if (args.size() != 2) {
    std::fprintf(stderr, "mics ckpt: expected one action and one PATH\n\n%s", kCkptUsage);
    return kExitUsage;
  }
  const std::string& action = args[0];
  try {
    if (action == "list") {
      checkpoint::list_run(args[1], std::cout);
      return kExitOk;
    }
    if (action == "inspect") {
      checkpoint::inspect(args[1], std::cout);
      return kExitOk;
    }
    if (action == "verify") {
      const std::vector<std::string> problems = checkpoint::verify(args[1], std::cout);
      for (const std::string& problem : problems) std::cerr << "mics ckpt verify: " << problem << '\n';
      return problems.empty() ? kExitOk : kExitFailure;
    }
  } catch (const Error& e) {
    std::cerr << "mics ckpt " << action << ": error: " << e.what() << '\n';
    return action == "verify" ? kExitFailure : kExitUsage;
  }
  std::fprintf(stderr, "mics ckpt: unknown action '%s'\n\n%s", action.c_str(), kCkptUsage);
  return kExitUsage;
}

}  // namespace mics::cli
