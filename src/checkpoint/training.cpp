#include "mics/checkpoint/training.hpp"

#include <mpi.h>

#include <algorithm>
#include <csignal>
#include <sstream>

#include "mics/comm/agreement.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"
#include "store.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

namespace {

// The last stop signal received (0: none). Set by the handler only; read at step boundaries.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int signal_number) { g_stop_signal = signal_number; }

const char* signal_name(int signal_number) {
  switch (signal_number) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

// The committed checkpoints to try for auto resume, newest first, starting at the one `latest` names;
// every uncommitted one is reported. Runs on rank 0.
std::vector<fs::path> auto_candidates(const fs::path& run_dir) {
  const std::vector<Entry> entries = list_checkpoints(run_dir);
  std::optional<std::int64_t> newest_allowed;
  const std::optional<fs::path> latest = read_latest(run_dir);
  if (latest) {
    const auto named = std::find_if(entries.begin(), entries.end(),
                                    [&](const Entry& e) { return e.committed && e.path == *latest; });
    if (named != entries.end()) {
      newest_allowed = named->step;
    } else {
      MICS_LOG(warning) << "checkpoint: " << (run_dir / kLatestFileName).string() << " names " << latest->string()
                        << ", which is missing: trying the newest committed checkpoint instead";
    }
  }
  std::vector<fs::path> candidates;
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    if (!e->committed) {
      MICS_LOG(warning) << "checkpoint: skipping " << e->path.string()
                        << ": not committed (a write that did not finish)";
      continue;
    }
    if (newest_allowed && e->step > *newest_allowed) {
      MICS_LOG(warning) << "checkpoint: skipping " << e->path.string() << ": newer than `latest` ("
                        << latest->filename().string() << ")";
      continue;
    }
    candidates.push_back(e->path);
  }
  return candidates;
}

}  // namespace

TrainingCheckpoints::TrainingCheckpoints(const config::Config& cfg, engine::Engine& engine,
                                         backends::Backend& backend, topology::Topology& topology,
                                         const model::ParamLayout& layout)
    : cfg_(cfg),
      engine_(engine),
      backend_(backend),
      topology_(topology),
      layout_(layout),
      run_dir_(fs::path(cfg.get_string("checkpoint.dir")) / cfg.get_string("run.name")),
      every_steps_(static_cast<int>(cfg.get_int("checkpoint.every_steps"))),
      every_seconds_(cfg.get_float("checkpoint.every_minutes") * 60.0),
      retention_{static_cast<int>(cfg.get_int("checkpoint.keep")), static_cast<int>(cfg.get_int("checkpoint.keep_every"))},
      last_write_(Clock::now()) {
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // MPI and file calls carry on; the flag is read at the step boundary
  sigaction(SIGUSR1, &action, &previous_usr1_);
  sigaction(SIGTERM, &action, &previous_term_);
}

TrainingCheckpoints::~TrainingCheckpoints() {
  sigaction(SIGUSR1, &previous_usr1_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
}

std::optional<ResumePoint> TrainingCheckpoints::load_or_explain(const fs::path& path, std::string& error) {
  const LoadResult result = load(path, engine_, backend_, topology_, layout_);
  if (!result.metadata) {
    error = result.error;
    return std::nullopt;
  }
  const Metadata& saved = *result.metadata;
  MICS_LOG(info) << "resumed from " << path.string() << " at step " << saved.step << " (" << saved.tokens_seen
                 << " tokens seen; saved by " << saved.world << " ranks, " << saved.strategy
                 << " p=" << saved.partition_size << ")";
  if (saved.seed != cfg_.get_int("run.seed"))
    MICS_LOG(warning) << "run.seed = " << cfg_.get_int("run.seed") << " differs from the checkpoint's " << saved.seed
                      << ": the data order changes";
  if (saved.schedule_total_steps != cfg_.get_int("train.steps") ||
      saved.schedule_warmup_steps != cfg_.get_int("train.warmup_steps") ||
      static_cast<float>(saved.schedule_lr) != static_cast<float>(cfg_.get_float("train.lr")))
    MICS_LOG(warning) << "the learning-rate schedule differs from the checkpoint's (lr " << saved.schedule_lr
                      << ", warmup " << saved.schedule_warmup_steps << ", steps " << saved.schedule_total_steps
                      << "): the resumed run follows the deck";
  return ResumePoint{saved.step, saved.tokens_seen};
}

std::optional<ResumePoint> TrainingCheckpoints::resume() {
  const std::string& mode = cfg_.get_string("train.resume");
  if (mode == "never") return std::nullopt;
  const MPI_Comm world = topology_.world().handle();
  std::string error;
  if (mode != "auto") {
    const fs::path path(mode);
    std::string problem;
    if (topology_.placement().world_rank == 0) {
      std::error_code ec;
      if (path.filename().string().ends_with(kPartialSuffix))
        problem = "train.resume = " + mode + ": the checkpoint is not committed (a write that did not finish)";
      else if (!fs::exists(state_file(path), ec))
        problem = "train.resume = " + mode + ": no checkpoint there (" + state_file(path).string() + " is missing)";
    }
    problem = comm::broadcast_string(world, 0, problem);
    if (!problem.empty()) fatal_all(problem, kExitFailure);
    if (auto point = load_or_explain(path, error)) return point;
    fatal_all("train.resume = " + mode + ": the checkpoint is unusable: " + error, kExitFailure);
  }

  std::string listing;
  if (topology_.placement().world_rank == 0) {
    for (const fs::path& p : auto_candidates(run_dir_)) listing += p.string() + '\n';
  }
  listing = comm::broadcast_string(world, 0, listing);
  std::istringstream lines(listing);
  std::vector<std::string> tried;
  for (std::string line; std::getline(lines, line);) {
    if (auto point = load_or_explain(line, error)) return point;
    MICS_LOG(warning) << "checkpoint: skipping " << line << ": " << error << "; trying the previous one";
    tried.push_back(line);
  }
  if (!tried.empty())
    fatal_all("train.resume = auto: no usable checkpoint in " + run_dir_.string() + " (" +
                  std::to_string(tried.size()) +
                  " unreadable); set train.resume=never to start fresh or name one with train.resume=PATH",
              kExitFailure);
  MICS_LOG(info) << "no checkpoint in " << run_dir_.string() << ": starting fresh";
  return std::nullopt;
}

bool TrainingCheckpoints::write(std::int64_t steps_done, std::int64_t tokens_seen) {
  const topology::Shape& shape = topology_.shape();
  Metadata metadata;
  metadata.step = steps_done;
  metadata.tokens_seen = tokens_seen;
  metadata.sampler_position = steps_done;
  metadata.seed = cfg_.get_int("run.seed");
  metadata.deck = cfg_.to_deck();
  metadata.schedule_lr = cfg_.get_float("train.lr");
  metadata.schedule_warmup_steps = cfg_.get_int("train.warmup_steps");
  metadata.schedule_total_steps = cfg_.get_int("train.steps");
  metadata.schedule_min_lr_ratio = cfg_.get_float("train.min_lr_ratio");
  metadata.model = layout_.shape();
  metadata.world = shape.world;
  metadata.partition_size = shape.partition_size;
  metadata.replicas = shape.replicas;
  metadata.ranks_per_node = shape.ranks_per_node;
  metadata.strategy = cfg_.get_string("parallel.strategy");
  const bool committed = save(engine_, backend_, topology_, layout_, metadata, run_dir_, retention_);
  last_write_ = Clock::now();
  return committed;
}

TrainingCheckpoints::Next TrainingCheckpoints::after_step(std::int64_t steps_done, std::int64_t tokens_seen,
                                                          bool training_complete) {
  // [0]: a stop signal on any rank; [1]: rank 0's clock says a timed checkpoint is due.
  int local[2] = {static_cast<int>(g_stop_signal), 0};
  if (topology_.placement().world_rank == 0 && every_seconds_ > 0)
    local[1] = std::chrono::duration<double>(Clock::now() - last_write_).count() >= every_seconds_;
  int agreed[2] = {0, 0};
  MICS_MPI_CHECK(MPI_Allreduce(local, agreed, 2, MPI_INT, MPI_MAX, topology_.world().handle()));

  if (agreed[0] != 0) {
    MICS_LOG(warning) << signal_name(agreed[0]) << " received: writing a checkpoint at step " << steps_done;
    const bool committed = write(steps_done, tokens_seen);
    if (training_complete) return Next::train_on;
    MICS_LOG(warning) << (committed ? "checkpoint written" : "checkpoint FAILED (an older one stays the latest)")
                      << "; stopping with exit status " << kExitRequeue << ": requeue the job to resume";
    return Next::stop_for_requeue;
  }
  const bool step_due = every_steps_ > 0 && steps_done % every_steps_ == 0;
  if (step_due || agreed[1] != 0) write(steps_done, tokens_seen);
  return Next::train_on;
}

}  // namespace mics::checkpoint
