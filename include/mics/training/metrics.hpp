// Per-step metrics as JSON lines (one object per optimizer step), written by rank 0 into the run
// directory, and the progress line with ETA.
#pragma once
#include <fstream>
#include <string>

#include "mics/engine/engine.hpp"

namespace mics::training {

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
};

// One JSON object on one line.
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
