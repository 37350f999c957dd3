// mics ckpt list|inspect|verify: look at checkpoints without MPI (one process).
#include <cstdio>
#include <iostream>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/checkpoint/tools.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
CommandSpec ckpt_spec() {
  CommandSpec spec("mics ckpt", "mics ckpt list|inspect|verify PATH",
                   "Looks at checkpoints without MPI (one process).");
  spec.positional("ACTION",
                  "list: the checkpoints of a run (<checkpoint.dir>/<run.name>): step, committed or partial,\n"
                  "size, and which one `latest` names\n"
                  "inspect: metadata and tensor table of a checkpoint (step_<N> dir or .h5 file)\n"
                  "verify: read every dataset, checking every Fletcher32 checksum")
      .positional("PATH", "a run directory (list) or a checkpoint (inspect, verify)");
  spec.epilog(
      "Exit status: 0 fine, 1 verify found a bad dataset (each one is named) or could not read the checkpoint,\n"
      "2 bad usage, or list/inspect could not read PATH.");
  return spec;
}
}  // namespace

int ckpt_command(const Args& args) {
  const CommandSpec spec = ckpt_spec();
  const ParsedCommand parsed = spec.parse(args);
  if (parsed.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  const std::string& action = parsed.positional[0];
  const std::string& path = parsed.positional[1];
  if (action != "list" && action != "inspect" && action != "verify") spec.fail("unknown action '" + action + "'");
  try {
    if (action == "list") {
      checkpoint::list_run(path, std::cout);
      return kExitOk;
    }
    if (action == "inspect") {
      checkpoint::inspect(path, std::cout);
      return kExitOk;
    }
    const std::vector<std::string> problems = checkpoint::verify(path, std::cout);
    for (const std::string& problem : problems) std::cerr << "mics ckpt verify: " << problem << '\n';
    return problems.empty() ? kExitOk : kExitFailure;
  } catch (const Error& e) {
    std::cerr << "mics ckpt " << action << ": error: " << e.what() << '\n';
    return action == "verify" ? kExitFailure : kExitUsage;
  }
}

}  // namespace mics::cli
