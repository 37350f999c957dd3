#include "mics/checkpoint/run_lock.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "mics/util/error.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;

std::string LockHolder::describe() const {
  return "job " + job + ", host " + host + ", pid " + std::to_string(pid);
}

LockHolder this_process() {
  LockHolder me;
  if (const char* job = std::getenv("SLURM_JOB_ID"); job != nullptr && *job != '\0') me.job = job;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "unknown");
  me.host = host;
  me.pid = static_cast<long>(getpid());
  return me;
}

std::optional<LockHolder> parse_lock(const std::string& text) {
  LockHolder holder;
  bool job = false, host = false, pid = false;
  std::istringstream lines(text);
  for (std::string key, value; lines >> key >> value;) {
    if (key == "job") job = true, holder.job = value;
    else if (key == "host") host = true, holder.host = value;
    else if (key == "pid") pid = true, holder.pid = std::strtol(value.c_str(), nullptr, 10);
  }
  if (!job || !host || !pid) return std::nullopt;
  return holder;
}

std::optional<JobState> query_slurm_job(const std::string& job) {
  for (char c : job)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return std::nullopt;  // not a job id
  const std::string command = "scontrol show job -o " + job + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char chunk[512];
  while (std::fgets(chunk, sizeof(chunk), pipe) != nullptr) out += chunk;
  const int status = pclose(pipe);
  if (out.find("Invalid job id") != std::string::npos) return JobState::finished;  // purged: long gone
  if (status != 0) return std::nullopt;  // no scontrol, or no controller to answer
  const std::size_t at = out.find("JobState=");
  if (at == std::string::npos) return std::nullopt;
  const std::string state = out.substr(at + 9, out.find_first_of(" \n", at) - at - 9);
  for (const char* live : {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED",
                           "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "STOPPED", "SIGNALING", "STAGE_OUT"})
    if (state == live) return JobState::live;
  return JobState::finished;
}

namespace {

std::string lock_text(const LockHolder& me) {
  return "job " + me.job + "\nhost " + me.host + "\npid " + std::to_string(me.pid) + "\n";
}

// A process that kill(pid, 0) finds and that is not a zombie (killed, waiting to be reaped: in a
// container whose init does not reap, it may stay one forever).
bool process_running(long pid) {
  if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // no /proc: trust kill()
  const std::size_t close = line.rfind(')');  // "pid (comm) S ..."
  return close == std::string::npos || close + 2 >= line.size() ||
         (line[close + 2] != 'Z' && line[close + 2] != 'X');
}

// Alive on this host, allowing a process that is being torn down (its job just failed) two seconds to go.
bool process_alive(long pid) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (!process_running(pid)) return false;
    usleep(100000);
  }
  return true;
}

// Why the lock is live (non-empty), or empty when it is ours or stale (then `stale_reason` says why).
std::string live_reason(const LockHolder& holder, const LockHolder& me, double heartbeat_age, double stale_seconds,
                        const JobQuery& query, std::string& stale_reason) {
  const bool same_host = holder.host == me.host;
  if (same_host && holder.pid == me.pid) return "";
  if (holder.job != "none" && holder.job == me.job) {
    if (same_host && process_alive(holder.pid))
      return "process " + std::to_string(holder.pid) + " of this job is still running on this host";
    stale_reason = "the same Slurm job (requeued)";
    return "";
  }
  if (holder.job != "none") {
    if (const std::optional<JobState> state = query ? query(holder.job) : std::nullopt) {
      if (*state == JobState::live) return "Slurm reports job " + holder.job + " as not finished";
      stale_reason = "Slurm reports job " + holder.job + " as finished";
      return "";
    }
  }
  if (same_host) {
    if (process_alive(holder.pid)) return "process " + std::to_string(holder.pid) + " is alive on this host";
    stale_reason = "process " + std::to_string(holder.pid) + " is gone";
    return "";
  }
  if (heartbeat_age < stale_seconds) {
    char text[96];
    std::snprintf(text, sizeof(text), "its heartbeat is %.0f s old (stale after checkpoint.lock_stale_minutes = %g)",
                  heartbeat_age, stale_seconds / 60.0);
    return text;
  }
  char text[96];
  std::snprintf(text, sizeof(text), "no heartbeat for %.0f s", heartbeat_age);
  stale_reason = text;
  return "";
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw InputError("checkpoint.dir: cannot write the run lock " + path.string());
}

}  // namespace

RunLock RunLock::acquire(const fs::path& run_dir, const LockHolder& me, double stale_seconds, const JobQuery& query,
                         std::string& note) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) throw InputError("checkpoint.dir: cannot create " + run_dir.string() + ": " + ec.message());
  RunLock lock;
  const fs::path path = run_dir / kLockFileName;
  const std::string text = lock_text(me);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd >= 0) {
    const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!ok) throw InputError("checkpoint.dir: cannot write the run lock " + path.string());
  } else {
    if (errno != EEXIST) throw InputError("checkpoint.dir: cannot create the run lock " + path.string());
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    const std::optional<LockHolder> holder = parse_lock(content.str());
    struct stat info {};
    double age = 0;
    if (stat(path.c_str(), &info) == 0) {
      const auto now = std::chrono::system_clock::now().time_since_epoch();
      age = std::chrono::duration<double>(now).count() - static_cast<double>(info.st_mtime);
    }
    if (holder) {
      std::string stale_reason;
      const std::string live = live_reason(*holder, me, age, stale_seconds, query, stale_reason);
      if (!live.empty())
        throw InputError("checkpoint directory " + run_dir.string() + " is in use by another run (" +
                         holder->describe() + "; " + live + "): give this run another run.name or checkpoint.dir, "
                         "or wait for that run to end (its lock is " + path.string() + ")");
      if (!stale_reason.empty())
        note = "took over the stale lock " + path.string() + " of " + holder->describe() + " (" + stale_reason + ")";
    } else {
      note = "replaced the unreadable lock " + path.string();
    }
    const fs::path temp = path.string() + ".tmp" + std::to_string(me.pid);
    write_file(temp, text);
    fs::rename(temp, path, ec);
    if (ec) throw InputError("checkpoint.dir: cannot take the run lock " + path.string() + ": " + ec.message());
  }
  lock.path_ = path;
  lock.me_ = me;
  return lock;
}

RunLock::RunLock(RunLock&& other) noexcept : path_(std::move(other.path_)), me_(std::move(other.me_)) {
  other.path_.clear();
}

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    me_ = std::move(other.me_);
    other.path_.clear();
  }
  return *this;
}

RunLock::~RunLock() { release(); }

void RunLock::heartbeat() const {
  if (!path_.empty()) utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);
}

void RunLock::release() noexcept {
  if (path_.empty()) return;
  try {
    std::ifstream in(path_);
    std::stringstream content;
    content << in.rdbuf();
    in.close();
    const std::optional<LockHolder> holder = parse_lock(content.str());
    if (holder && holder->job == me_.job && holder->host == me_.host && holder->pid == me_.pid) {
      std::error_code ec;
      fs::remove(path_, ec);
    }
  } catch (...) {
  }
  path_.clear();
}

}  // namespace mics::checkpoint
