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
constexpr const char* kTrainUsage =
    "usage: mpirun -np N mics train --deck FILE [--section.key=value ...]\n"
    "       srun --mpi=pmix mics train --deck FILE [...]\n"
    "\n"
    "Trains the model the deck describes. Every key of the deck can be overridden on the command line,\n"
    "e.g. --train.steps=50 --parallel.strategy=zero3. `mics config --deck FILE` prints every key.\n"
    "\n"
    "Checkpoints go to <checkpoint.dir>/<run.name>/step_<N>/ (every checkpoint.every_steps steps,\n"
    "every checkpoint.every_minutes minutes); train.resume = auto continues from the latest one.\n"
    "On SIGUSR1 or SIGTERM (e.g. sbatch --signal=USR1@120) every rank writes a checkpoint at the next\n"
    "step boundary and exits with status 75 (EX_TEMPFAIL): requeue the job to resume it.\n";

}  // namespace

int train_command(const Args& args) {
  const CommandLine command_line = split_command_line(args);
  if (command_line.help) {
    std::fputs(kTrainUsage, stdout);
    return kExitOk;
  }
  MpiSession mpi;
  if (!command_line.rest.empty())
    throw InputError("mics train: unexpected argument '" + command_line.rest.front() + "'\n" + kTrainUsage,
                     ErrorScope::all_ranks);
  if (!command_line.deck)
    throw InputError(std::string("mics train: --deck FILE is required\n") + kTrainUsage, ErrorScope::all_ranks);
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
