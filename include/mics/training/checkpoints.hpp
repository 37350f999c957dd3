// Checkpoints seen from the run loop: resume per train.resume, and after every optimizer step the
// collective decision to write one (checkpoint.every_steps, checkpoint.every_minutes on rank 0's clock,
// a stop signal on any rank), followed, after a signal, by the request to stop and be requeued.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "mics/checkpoint/checkpoint.hpp"
#include "mics/checkpoint/writer.hpp"
#include "mics/config/options.hpp"
#include "mics/topology/plan.hpp"
#include "mics/training/stop_signals.hpp"

namespace mics::training {

// Where a resumed run continues.
struct ResumePoint {
  std::int64_t step = 0;  // optimizer steps already done: the loop continues at this 0-based step
  std::int64_t tokens_seen = 0;
};

class RunCheckpoints {
 public:
  RunCheckpoints(const config::Options& options, const topology::ParallelPlan& plan, engine::Engine& engine,
                 backends::Backend& backend, const topology::Topology& topology, const model::ParamLayout& layout,
                 const StopSignals& signals, checkpoint::IoPatience patience);
  RunCheckpoints(const RunCheckpoints&) = delete;
  RunCheckpoints& operator=(const RunCheckpoints&) = delete;

  const std::filesystem::path& run_dir() const { return run_dir_; }

  // Collective over the world. train.resume = never: nullopt. auto: the checkpoint `latest` names in
  // <checkpoint.dir>/<run.name> (uncommitted or unreadable ones are skipped with a warning naming them,
  // falling back to older ones), nullopt when the run has none. PATH: that checkpoint. On success the
  // engine holds the checkpoint's states; when nothing usable is found, every rank throws the same
  // PeerError naming the checkpoint.
  std::optional<ResumePoint> resume();

  enum class Next { train_on, stop_for_requeue };
  // Collective over the world, after `steps_done` optimizer steps: writes a checkpoint when one is due.
  // After a signal it writes one and returns stop_for_requeue (unless training is complete): the
  // caller exits with kExitRequeue. A checkpoint that cannot be written throws CheckpointError.
  Next after_step(std::int64_t steps_done, std::int64_t tokens_seen, bool training_complete);
  // Collective over the world: commits the checkpoint still being written (a run that stops on an error
  // every rank shares loses nothing already staged). Throws CheckpointError when it cannot be committed.
  void finish_writes() { writer_.finish(); }
  // What the checkpoints committed since the last call cost (world rank 0 only); for the metrics.
  std::vector<checkpoint::WriteReport> take_reports() { return writer_.take_reports(); }

 private:
  using Clock = std::chrono::steady_clock;
  void write(std::int64_t steps_done, std::int64_t tokens_seen);
  std::optional<ResumePoint> load_or_explain(const std::filesystem::path& path, std::string& error);

  const config::Options& options_;
  const topology::ParallelPlan& plan_;
  engine::Engine& engine_;
  backends::Backend& backend_;
  const topology::Topology& topology_;
  const model::ParamLayout& layout_;
  const StopSignals& signals_;
  std::filesystem::path run_dir_;
  checkpoint::Retention retention_;
  checkpoint::IoPatience patience_;  // run.timeout and the last resort of the writers' watchdog
  checkpoint::CheckpointWriter writer_;
  bool single_file_format_ = false;  // tests of old checkpoints (checkpoint::kWriteFormatEnv)
  Clock::time_point last_write_;
};

}  // namespace mics::training
