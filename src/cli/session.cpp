#include "session.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "mics/config/config.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {
// Under Slurm, a task started without a PMI plugin (plain srun where MpiDefault=none, as on
// ParallelCluster) has no way to join the others: Open MPI would refuse inside MPI_Init with its own
// message, or start a singleton. Detect it first and say what to do.
void refuse_launch_without_pmi() {
  const char* step = std::getenv("SLURM_STEP_ID");
  const char* ntasks = std::getenv("SLURM_NTASKS");
  if (!step || !ntasks || std::atoi(ntasks) <= 1) return;
  for (const char* pmi : {"PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK"})
    if (std::getenv(pmi)) return;
  std::fprintf(stderr,
               "mics: error: this task was started by srun without an MPI plugin (SLURM_NTASKS=%s but no PMIx "
               "rank): every task would run alone. Launch with `srun --mpi=pmix` (ParallelCluster's "
               "MpiDefault=none starts singletons).\n",
               ntasks);
  std::exit(kExitUsage);
}
}  // namespace

MpiSession::MpiSession() {
  refuse_launch_without_pmi();
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  log::init(rank_);
}

MpiSession::~MpiSession() {
  log::flush();
  // An exception on its way to main() may have been seen by this rank alone: MPI_Finalize would wait for
  // peers that are still inside a collective. main() decides how the job ends (stop.hpp).
  if (std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

config::Options load_options(const ParsedCommand& command_line) {
  const config::Config cfg = config::load(MPI_COMM_WORLD, command_line.deck, command_line.overrides);
  config::Options options = on_every_rank([&] { return config::read_options(cfg); });
  log::Options log_options;
  log_options.level = log::parse_severity(options.log.level);
  log_options.all_ranks = options.log.all_ranks;
  log_options.file_pattern = options.log.file;
  log::configure(log_options);  // a file that cannot be opened is this rank's error
  return options;
}

std::chrono::milliseconds no_progress_limit(const config::Options& options) {
  return std::chrono::milliseconds(static_cast<long long>(options.run.timeout_minutes * 60000.0));
}

topology::ParallelPlan plan_for_world(const config::Options& options, int world) {
  const int ranks_per_node = options.topology.ranks_per_node > 0
                                 ? options.topology.ranks_per_node
                                 : on_every_rank([] { return topology::detect_ranks_per_node(MPI_COMM_WORLD); });
  return on_every_rank([&] {
    return topology::make_plan(options.parallel, options.train.micro_batch, options.train.grad_accum, world,
                               ranks_per_node);
  });
}

}  // namespace mics::cli
