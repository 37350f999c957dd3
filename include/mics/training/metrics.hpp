// Per-step metrics as JSON lines (one object per optimizer step), written by rank 0 into the run
// directory, and the progress line with ETA.
#pragma once
#include <fstream>
#include <optional>
#include <string>

#include "mics/checkpoint/writer.hpp"
#include "mics/engine/engine.hpp"

namespace mics::training {

// Every train.skew_every steps: the slowest and fastest rank's step time and the largest memory, over
// all ranks (one MPI reduction on the world, outside the engine's traffic counters).
struct RankSpread {
  double slowest_s = 0, fastest_s = 0;
  int slowest_rank = 0, fastest_rank = 0;
  double max_rss_bytes = 0, max_device_bytes = 0;
  int max_rss_rank = 0;
};

struct StepRecord {
  int step = 0;  // 0-based
  int total_steps = 0;
  float loss = 0;
  float lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  double flops_per_s = 0;  // model FLOP/s: tokens/s * (6N + 6LCT)
  engine::StepTimes times;
  comm::Traffic traffic;
  double unix_time = 0;          // when the step ended (written as ISO-8601 UTC "timestamp")
  double mfu = 0;                // flops_per_s / (world x the per-rank peak)
  double rss_bytes = 0;          // rank 0's resident memory (VmRSS)
  double device_bytes = 0;       // rank 0's device memory in use (cuda; 0 on cpu)
  std::optional<RankSpread> spread;  // every train.skew_every steps
  std::string skipped;               // what was not finite when the numerics guard skipped the step; else ""
};

// Seconds since the epoch, now.
double unix_now();
// "2026-12-02T01:56:25.123Z"
std::string iso8601_utc(double unix_seconds);
// This process's resident set size (VmRSS of /proc/self/status) in bytes; 0 where unavailable.
double resident_bytes();

// One JSON object on one line (nlohmann::json). A NaN or infinite value (a diverged loss) is written as
// null, so every line stays valid JSON.
std::string to_json(const StepRecord& record);

class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Appends to path (creating its directories) after dropping the records of steps after
  // `resumed_step`: a run resumed from an older checkpoint repeats those steps, a fresh run (0) starts
  // an empty file.
  MetricsWriter(const std::string& path, long resumed_step);
  void write(const StepRecord& record);
  // {"step": step + 1, "val_loss": loss}, numbers as in write().
  void write_validation(int step, float loss);
  // {"step":N,"timestamp":...,"checkpoint":{"bytes":B,"stall_s":S,"write_s":W,"commit_s":C,"mb_per_s":M}}
  void write_checkpoint(const checkpoint::WriteReport& report);
  const std::string& path() const { return path_; }

 private:
  void write_line(const std::string& json);
  std::string path_;
  std::ofstream out_;
};

// "1h02m03s", "4m05s", "7.2s"
std::string format_duration(double seconds);
// 1234567 -> "1.23 MB" (decimal units, as nccl-tests)
std::string format_bytes(double bytes);

}  // namespace mics::training
