// A watchdog for work that cannot be interrupted or timed from inside (collective HDF5 writes: MPI-IO
// waits for every writer, and nothing in HDF5 gives up). Its own thread ends the process when `limit`
// passes with neither a call to advance() nor growth of the watched files. The main thread reports
// progress; the watchdog makes no MPI or HDF5 call, it only looks at file sizes and calls `on_stall`,
// which must end the process (the mics command passes one that prints the reason and exits 1, after
// which mpirun or srun stop the other ranks).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace mics {

class ProgressWatchdog {
 public:
  using OnStall = std::function<void(const std::string& reason)>;
  // limit 0 or no on_stall: a watchdog that never fires (no thread). `directory`: the files directly in it
  // count as progress while their total size grows (may be empty).
  ProgressWatchdog(std::chrono::milliseconds limit, OnStall on_stall, std::filesystem::path directory,
                   std::string what);
  ~ProgressWatchdog();
  ProgressWatchdog(const ProgressWatchdog&) = delete;
  ProgressWatchdog& operator=(const ProgressWatchdog&) = delete;

  // Progress: the owner finished a piece of work and is about to start `next` (named in the message).
  void advance(std::string next);

 private:
  void watch();

  std::chrono::milliseconds limit_;
  OnStall on_stall_;
  std::filesystem::path directory_;
  std::string what_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point last_progress_;
  std::string doing_;
  std::thread thread_;
};

// The total size of the regular files directly in `directory` (0 when it cannot be read).
std::uintmax_t directory_file_bytes(const std::filesystem::path& directory);

}  // namespace mics
