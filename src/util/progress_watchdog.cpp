#include "mics/util/progress_watchdog.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace mics {

namespace fs = std::filesystem;

std::uintmax_t directory_file_bytes(const fs::path& directory) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& item : fs::directory_iterator(directory, ec)) {
    std::error_code item_ec;
    if (item.is_regular_file(item_ec)) {
      const std::uintmax_t size = item.file_size(item_ec);
      if (!item_ec) total += size;
    }
  }
  return total;
}

ProgressWatchdog::ProgressWatchdog(std::chrono::milliseconds limit, OnStall on_stall, fs::path directory,
                                   std::string what)
    : limit_(limit),
      on_stall_(std::move(on_stall)),
      directory_(std::move(directory)),
      what_(std::move(what)),
      last_progress_(std::chrono::steady_clock::now()) {
  if (limit_.count() > 0 && on_stall_) thread_ = std::thread([this] { watch(); });
}

ProgressWatchdog::~ProgressWatchdog() {
  if (!thread_.joinable()) return;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ProgressWatchdog::advance(std::string next) {
  const std::lock_guard<std::mutex> lock(mutex_);
  last_progress_ = std::chrono::steady_clock::now();
  doing_ = std::move(next);
}

void ProgressWatchdog::watch() {
  using Clock = std::chrono::steady_clock;
  // Looks about ten times per limit, at most once a second: a stat of a few files.
  const auto interval = std::clamp<std::chrono::milliseconds>(limit_ / 10, std::chrono::milliseconds(10),
                                                              std::chrono::milliseconds(1000));
  std::uintmax_t bytes = directory_.empty() ? 0 : directory_file_bytes(directory_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
    if (!directory_.empty()) {
      const std::uintmax_t now_bytes = directory_file_bytes(directory_);
      if (now_bytes != bytes) last_progress_ = Clock::now();
      bytes = now_bytes;
    }
    if (Clock::now() - last_progress_ <= limit_) continue;
    char minutes[32];
    std::snprintf(minutes, sizeof minutes, "%g", std::chrono::duration<double>(limit_).count() / 60.0);
    std::string reason = what_ + " made no progress for " + minutes + " min (run.timeout)";
    if (!doing_.empty()) reason += " in " + doing_;
    if (!directory_.empty())
      reason += "; the files in " + directory_.string() + " stopped growing at " + std::to_string(bytes) + " bytes";
    reason += ": a rank writing with it is stopped or stuck, or the file system is";
    const OnStall stall = on_stall_;
    lock.unlock();
    stall(reason);  // ends the process
    return;
  }
}

}  // namespace mics
