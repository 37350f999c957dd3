// Run identity: the lock a run takes in its checkpoint directory, so that two jobs started from one deck
// (the same <checkpoint.dir>/<run.name>) never write, or resume from, each other's checkpoints.
//
// The lock file <run_dir>/lock holds three lines, `job <SLURM_JOB_ID or none>`, `host <hostname>`,
// `pid <pid>`; its modification time is the holder's heartbeat (refreshed after every step). A lock is
//   - ours: the same process, or the same Slurm job (a requeued job keeps its SLURM_JOB_ID) whose named
//     process is not alive on this host;
//   - live: a Slurm job that `scontrol show job` reports pending, running, suspended, completing or
//     requeued; else, on this host, a process that kill(pid, 0) finds; else, on another host and with
//     no scontrol to ask, a heartbeat younger than the stale timeout;
//   - stale otherwise: it is taken over with a warning.
// Only one process (world rank 0) takes the lock.
#pragma once
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace mics::checkpoint {

inline constexpr const char* kLockFileName = "lock";

struct LockHolder {
  std::string job = "none";  // SLURM_JOB_ID, or "none" outside Slurm
  std::string host;
  long pid = 0;
  std::string describe() const;  // "job 123, host n1, pid 4567"
};

// This process: SLURM_JOB_ID (or none), gethostname(), getpid().
LockHolder this_process();

// What Slurm says of a job: nullopt when it cannot be asked (no scontrol) or did not answer.
enum class JobState { live, finished };
using JobQuery = std::function<std::optional<JobState>(const std::string& job)>;
// Runs `scontrol show job -o ID`: pending, running, suspended, completing, configuring, requeued,
// resizing and stopped are live; any other state, or a job Slurm no longer knows, is finished.
std::optional<JobState> query_slurm_job(const std::string& job);

class RunLock {
 public:
  RunLock() = default;
  // Takes <run_dir>/lock for `me` (creating run_dir). Throws InputError naming the holder when another
  // live run holds it; a stale lock is taken over and `note` says whose it was.
  static RunLock acquire(const std::filesystem::path& run_dir, const LockHolder& me, double stale_seconds,
                         const JobQuery& query, std::string& note);
  RunLock(RunLock&& other) noexcept;
  RunLock& operator=(RunLock&& other) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock();  // releases

  const std::filesystem::path& path() const { return path_; }
  bool held() const { return !path_.empty(); }
  void heartbeat() const;  // touches the file (best effort)
  void release() noexcept;  // removes the file if it still names this holder

 private:
  std::filesystem::path path_;
  LockHolder me_;
};

// Parses a lock file's text; nullopt when it is not one.
std::optional<LockHolder> parse_lock(const std::string& text);

}  // namespace mics::checkpoint
