// mics train: deck -> config -> topology -> collectives -> engine run.
#include <cstdio>

#include "commands.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/engine/engine.hpp"
#include "mics/training/trainer.hpp"
#include "mics/log/log.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"

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

// The group shape a strategy hands to the engine; an invalid shape stops every rank with its reason.
topology::Topology make_topology(const config::Config& cfg, int world) {
  const engine::Strategy strategy = engine::parse_strategy(cfg.get_string("parallel.strategy"));
  topology::TopologyOptions options;
  options.ranks_per_node = static_cast<int>(cfg.get_int_or_auto("topology.ranks_per_node").value_or(0));
  // Detected first so the strategy can name its partition size before the groups are built.
  if (options.ranks_per_node == 0) options.ranks_per_node = topology::detect_ranks_per_node(MPI_COMM_WORLD);
  const int ranks_per_node = options.ranks_per_node;
  const int requested = static_cast<int>(cfg.get_int_or_auto("parallel.partition_size").value_or(0));
  if (strategy != engine::Strategy::mics && cfg.is_set("parallel.partition_size"))
    MICS_LOG(warning) << "parallel.partition_size is ignored by strategy " << engine::to_string(strategy);
  options.partition_size = engine::partition_size_for(strategy, requested, world, ranks_per_node);
  return topology::Topology::create(options);
}
}  // namespace

int train_command(const Args& args) {
  const CommandLine command_line = split_command_line(args);
  if (command_line.help) {
    std::fputs(kTrainUsage, stdout);
    return kExitOk;
  }
  MpiSession mpi;
  if (!command_line.rest.empty())
    fatal_all("mics train: unexpected argument '" + command_line.rest.front() + "'\n" + kTrainUsage);
  if (!command_line.deck) fatal_all(std::string("mics train: --deck FILE is required\n") + kTrainUsage);
  try {
    topology::check_slurm_world(mpi.size());
  } catch (const Error& e) {
    fatal_all(e.what());
  }
  const config::Config cfg = load_config(command_line);
  MICS_LOG(info) << "mics " << MICS_VERSION << ", effective configuration:\n" << cfg.to_deck();

  // Everything below is the same on every rank: an invalid shape or model is an all-ranks error.
  topology::Topology topology = [&] {
    try {
      return make_topology(cfg, mpi.size());
    } catch (const Error& e) {
      fatal_all(e.what());
    }
  }();
  MICS_LOG(info) << "topology:\n" << topology.describe();
  try {
    (void)training::model_shape(cfg);
  } catch (const Error& e) {
    fatal_all(e.what());
  }
  comm::MpiCollectives collectives;
  // Errors from here on (a bad shard, a file that cannot be written) may be seen by one rank only:
  // main() aborts the whole job with the message.
  return training::run_training(cfg, topology, collectives);
}

}  // namespace mics::cli
