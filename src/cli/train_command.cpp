// mics train: deck -> config -> topology -> collectives -> engine run.
#include <cstdio>

#include "commands.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/training/trainer.hpp"
#include "mics/log/log.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"
#include "stop.hpp"

namespace mics::cli {

namespace {
CommandSpec train_spec() {
  CommandSpec spec("mics train",
                   "mpirun -np N mics train --deck FILE [--section.key=value ...]\n"
                   "       srun --mpi=pmix mics train --deck FILE [...]",
                   "Trains the model the deck describes. Every key of the deck can be overridden on the command line,\n"
                   "e.g. --train.steps=50 --parallel.strategy=zero3. `mics config --deck FILE` prints every key.");
  spec.takes_deck().epilog(
      "Checkpoints go to <checkpoint.dir>/<run.name>/step_<N>/ (every checkpoint.every_steps steps,\n"
      "every checkpoint.every_minutes minutes); train.resume = auto continues from the latest one.\n"
      "On SIGUSR1 or SIGTERM (e.g. sbatch --signal=USR1@120) every rank writes a checkpoint at the next\n"
      "step boundary and exits with status 75 (EX_TEMPFAIL): requeue the job to resume it.");
  return spec;
}
}  // namespace

int train_command(const Args& args) {
  const CommandSpec spec = train_spec();
  const ParsedCommand command_line = spec.parse(args);
  if (command_line.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  if (!command_line.deck) spec.fail("--deck FILE is required");
  MpiSession mpi;
  on_every_rank([&] { topology::check_slurm_world(mpi.size()); });
  const config::Options options = load_options(command_line);
  MICS_LOG(info) << "mics " << MICS_VERSION << ", effective configuration:\n" << options.effective_deck;

  // Resolved once, the same on every rank: an invalid layout or model is an all-ranks error.
  const topology::ParallelPlan plan = plan_for_world(options, mpi.size());
  const model::ModelSpec model = on_every_rank([&] { return model::resolve_model(options.model); });
  const topology::Topology topology = topology::Topology::create(plan.shape);
  MICS_LOG(info) << "topology:\n" << topology.describe();
  comm::MpiTransport transport(no_progress_limit(options));
  // Errors from here on (a bad shard, a file that cannot be written) may be seen by one rank only:
  // they are agreed on where the code can, and otherwise abort the job (stop.hpp).
  return training::run_training(
      {options, plan, model, topology, transport, [](const std::string& reason) { exit_now(reason); }});
}

}  // namespace mics::cli
