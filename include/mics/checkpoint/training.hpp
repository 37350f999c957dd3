// Checkpoints seen from the training loop: resume per train.resume, and after every optimizer step the
// collective decision to write (checkpoint.every_steps, checkpoint.every_minutes on rank 0's clock,
// SIGUSR1/SIGTERM on any rank) followed, after a signal, by the request to stop and be requeued.
#pragma once
#include <chrono>
#include <signal.h>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "mics/checkpoint/checkpoint.hpp"
#include "mics/config/config.hpp"

namespace mics::checkpoint {

// Where a resumed run continues.
struct ResumePoint {
  std::int64_t step = 0;  // optimizer steps already done: the loop continues at this 0-based step
  std::int64_t tokens_seen = 0;
};

class TrainingCheckpoints {
 public:
  // Installs the SIGUSR1 and SIGTERM handlers (they only set a flag); the destructor restores the
  // previous ones. At most one instance at a time.
  TrainingCheckpoints(const config::Config& cfg, engine::Engine& engine, backends::Backend& backend,
                      topology::Topology& topology, const model::ParamLayout& layout);
  ~TrainingCheckpoints();
  TrainingCheckpoints(const TrainingCheckpoints&) = delete;
  TrainingCheckpoints& operator=(const TrainingCheckpoints&) = delete;

  // Collective over the world. train.resume = never: nullopt. auto: the checkpoint `latest` names in
  // <checkpoint.dir>/<run.name> (uncommitted or unreadable ones are skipped with a warning naming them,
  // falling back to older ones), nullopt when the run has none. PATH: that checkpoint, or every rank
  // stops with an error naming it. On success the engine holds the checkpoint's states.
  std::optional<ResumePoint> resume();

  enum class Next { train_on, stop_for_requeue };
  // Collective over the world, after `steps_done` optimizer steps: writes a checkpoint when one is due.
  // After a signal it writes one and returns stop_for_requeue (unless training is complete): the
  // caller exits with kExitRequeue.
  Next after_step(std::int64_t steps_done, std::int64_t tokens_seen, bool training_complete);


 private:
  using Clock = std::chrono::steady_clock;
  bool write(std::int64_t steps_done, std::int64_t tokens_seen);
  std::optional<ResumePoint> load_or_explain(const std::filesystem::path& path, std::string& error);

  const config::Config& cfg_;
  engine::Engine& engine_;
  backends::Backend& backend_;
  topology::Topology& topology_;
  const model::ParamLayout& layout_;
  std::filesystem::path run_dir_;
  int every_steps_ = 0;
  double every_seconds_ = 0;
  Retention retention_;
  Clock::time_point last_write_;
  struct sigaction previous_usr1_ {};
  struct sigaction previous_term_ {};
};

}  // namespace mics::checkpoint
