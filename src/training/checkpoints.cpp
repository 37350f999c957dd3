#include "mics/training/checkpoints.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "mics/comm/agreement.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::training {

using checkpoint::Entry;
using checkpoint::kLatestFileName;
using checkpoint::kPartialSuffix;

namespace fs = std::filesystem;

namespace {

// The committed checkpoints to try for auto resume, newest first, starting at the one `latest` names;
// every uncommitted one is reported. Runs on rank 0.
std::vector<fs::path> auto_candidates(const fs::path& run_dir) {
  const std::vector<Entry> entries = checkpoint::list_checkpoints(run_dir);
  std::optional<std::int64_t> newest_allowed;
  const std::optional<fs::path> latest = checkpoint::read_latest(run_dir);
  if (latest) {
    const auto named = std::find_if(entries.begin(), entries.end(),
                                    [&](const Entry& e) { return e.committed && e.path == *latest; });
    if (named != entries.end()) {
      newest_allowed = named->step;
    } else {
      MICS_LOG(warning) << "checkpoint: " << (run_dir / kLatestFileName).string() << " names " << latest->string()
                        << ", which is missing: trying the newest committed checkpoint instead";
    }
  } else if (const std::optional<std::string> garbage = checkpoint::malformed_latest(run_dir)) {
    MICS_LOG(warning) << "checkpoint: " << (run_dir / kLatestFileName).string() << " holds '" << printable(*garbage)
                      << "', not the name of a checkpoint (step_<N>): trying the newest committed checkpoint instead";
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

RunCheckpoints::RunCheckpoints(const config::Options& options, const topology::ParallelPlan& plan,
                               engine::Engine& engine, backends::Backend& backend, const topology::Topology& topology,
                               const model::ParamLayout& layout, const StopSignals& signals,
                               checkpoint::IoPatience patience)
    : options_(options),
      plan_(plan),
      engine_(engine),
      backend_(backend),
      topology_(topology),
      layout_(layout),
      signals_(signals),
      run_dir_(fs::path(options.checkpoint.dir) / options.run.name),
      retention_{options.checkpoint.keep, options.checkpoint.keep_every},
      patience_(std::move(patience)),
      writer_(engine, backend, topology, layout, run_dir_, retention_, patience_),
      single_file_format_(std::getenv(checkpoint::kWriteFormatEnv) != nullptr &&
                          std::string(std::getenv(checkpoint::kWriteFormatEnv)) == "2"),
      last_write_(Clock::now()) {
  const config::CheckpointOptions& c = options.checkpoint;
  if (!c.dir.empty() && (c.every_steps > 0 || c.every_minutes > 0 || c.at_end) && !single_file_format_)
    writer_.prepare();
}

std::optional<ResumePoint> RunCheckpoints::load_or_explain(const fs::path& path, std::string& error) {
  const checkpoint::LoadResult result = checkpoint::load(path, engine_, backend_, topology_, layout_, patience_);
  if (!result.metadata) {
    error = result.error;
    return std::nullopt;
  }
  const checkpoint::Metadata& saved = *result.metadata;
  MICS_LOG(info) << "resumed from " << path.string() << " at step " << saved.step << " (" << saved.tokens_seen
                 << " tokens seen; saved by " << saved.world << " ranks, " << saved.strategy
                 << " p=" << saved.partition_size << ")";
  const config::TrainOptions& train = options_.train;
  if (static_cast<std::uint64_t>(saved.seed) != options_.run.seed)
    MICS_LOG(warning) << "run.seed = " << options_.run.seed << " differs from the checkpoint's " << saved.seed
                      << ": the data order changes";
  if (saved.schedule_total_steps != train.steps || saved.schedule_warmup_steps != train.warmup_steps ||
      static_cast<float>(saved.schedule_lr) != static_cast<float>(train.lr))
    MICS_LOG(warning) << "the learning-rate schedule differs from the checkpoint's (lr " << saved.schedule_lr
                      << ", warmup " << saved.schedule_warmup_steps << ", steps " << saved.schedule_total_steps
                      << "): the resumed run follows the deck";
  return ResumePoint{saved.step, saved.tokens_seen};
}

std::optional<ResumePoint> RunCheckpoints::resume() {
  const config::TrainOptions& train = options_.train;
  if (train.resume == config::TrainOptions::Resume::never) return std::nullopt;
  std::string error;
  if (train.resume == config::TrainOptions::Resume::path) {
    const std::string& mode = train.resume_path;
    const fs::path path(mode);
    std::string problem;
    if (topology_.placement().world_rank == 0) {
      std::error_code ec;
      if (path.filename().string().ends_with(kPartialSuffix))
        problem = "train.resume = " + mode + ": the checkpoint is not committed (a write that did not finish)";
      else if (!fs::exists(checkpoint::state_file(path), ec))
        problem = "train.resume = " + mode + ": no checkpoint there (" + checkpoint::state_file(path).string() +
                  " is missing)";
    }
    problem =
        comm::broadcast_string(topology_.world(), 0, problem, {patience_.limit, "the agreement on train.resume", {}});
    if (!problem.empty()) throw PeerError(problem, ErrorScope::all_ranks);
    if (auto point = load_or_explain(path, error)) return point;
    throw PeerError("train.resume = " + mode + ": the checkpoint is unusable: " + error, ErrorScope::all_ranks);
  }

  std::string listing;
  if (topology_.placement().world_rank == 0) {
    for (const fs::path& p : auto_candidates(run_dir_)) listing += p.string() + '\n';
  }
  listing = comm::broadcast_string(topology_.world(), 0, listing,
                                   {patience_.limit, "the agreement on the checkpoints to resume from", {}});
  std::istringstream lines(listing);
  std::vector<std::string> tried;
  for (std::string line; std::getline(lines, line);) {
    if (auto point = load_or_explain(line, error)) return point;
    MICS_LOG(warning) << "checkpoint: skipping " << line << ": " << error << "; trying the previous one";
    tried.push_back(line);
  }
  if (!tried.empty())
    throw PeerError("train.resume = auto: no usable checkpoint in " + run_dir_.string() + " (" +
                        std::to_string(tried.size()) +
                        " unreadable); set train.resume=never to start fresh or name one with train.resume=PATH",
                    ErrorScope::all_ranks);
  MICS_LOG(info) << "no checkpoint in " << run_dir_.string() << ": starting fresh";
  return std::nullopt;
}

void RunCheckpoints::write(std::int64_t steps_done, std::int64_t tokens_seen) {
  const topology::Shape& shape = plan_.shape;
  const config::TrainOptions& train = options_.train;
  checkpoint::Metadata metadata;
  metadata.step = steps_done;
  metadata.tokens_seen = tokens_seen;
  metadata.sampler_position = steps_done;
  metadata.seed = static_cast<std::int64_t>(options_.run.seed);
  metadata.deck = options_.effective_deck;
  metadata.schedule_lr = train.lr;
  metadata.schedule_warmup_steps = train.warmup_steps;
  metadata.schedule_total_steps = train.steps;
  metadata.schedule_min_lr_ratio = train.min_lr_ratio;
  metadata.model = layout_.shape();
  metadata.world = shape.world;
  metadata.partition_size = shape.partition_size;
  metadata.replicas = shape.replicas;
  metadata.ranks_per_node = shape.ranks_per_node;
  metadata.strategy = std::string(config::to_string(plan_.strategy));
  if (single_file_format_)
    checkpoint::save(engine_, backend_, topology_, layout_, metadata, run_dir_, retention_, patience_);
  else
    writer_.start(metadata);  // the rest happens in the background, committed by a later after_step()
  last_write_ = Clock::now();
}

RunCheckpoints::Next RunCheckpoints::after_step(std::int64_t steps_done, std::int64_t tokens_seen,
                                                          bool training_complete) {
  // [0]: a stop signal on any rank; [1]: rank 0's clock says a timed checkpoint is due; [2]: a rank whose
  // part of the checkpoint in flight is still being written.
  const double every_seconds = options_.checkpoint.every_minutes * 60.0;
  int local[3] = {signals_.received(), 0, writer_.ended_here() ? 0 : 1};
  if (topology_.placement().world_rank == 0 && every_seconds > 0)
    local[1] = std::chrono::duration<double>(Clock::now() - last_write_).count() >= every_seconds;
  int agreed[3] = {0, 0, 0};
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallreduce(local, agreed, 3, MPI_INT, MPI_MAX, topology_.world().handle(), &request));
  comm::wait_or_give_up(request, patience_.limit, "the step's agreement on checkpoints", topology_.world());
  // Every rank's write has ended: commit it now (or stop with the failure), while training goes on.
  if (writer_.in_flight() && agreed[2] == 0) writer_.finish();

  if (agreed[0] != 0) {
    MICS_LOG(warning) << StopSignals::name(agreed[0]) << " received: writing a checkpoint at step " << steps_done;
    write(steps_done, tokens_seen);
    writer_.finish();  // a checkpoint that cannot be written throws: no exit 75 without one committed
    if (training_complete) return Next::train_on;
    MICS_LOG(warning) << "checkpoint written; stopping with exit status " << kExitRequeue
                      << ": requeue the job to resume";
    return Next::stop_for_requeue;
  }
  const int every_steps = options_.checkpoint.every_steps;
  const bool step_due = every_steps > 0 && steps_done % every_steps == 0;
  // The last step is always kept (checkpoint.at_end), so a run whose train.steps is not a multiple of
  // checkpoint.every_steps loses nothing; it is written once when the step was due anyway.
  const bool final_due = training_complete && options_.checkpoint.at_end && !options_.checkpoint.dir.empty();
  if (step_due || agreed[1] != 0 || final_due) {
    if (final_due && !step_due && agreed[1] == 0)
      MICS_LOG(info) << "writing the final checkpoint at step " << steps_done;
    write(steps_done, tokens_seen);
  }
  if (training_complete) writer_.finish();  // the run ends with every checkpoint committed
  return Next::train_on;
}

}  // namespace mics::training
