#include "mics/training/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <cmath>
#include <nlohmann/json.hpp>

#include "mics/util/error.hpp"

namespace mics::training {

namespace {
// A float as the double nearest its 9-digit decimal form: the JSON shows "2.5", not "2.5000000953674316".
double tidy(float value) {
  if (!std::isfinite(value)) return value;
  char text[32];
  std::snprintf(text, sizeof(text), "%.9g", static_cast<double>(value));
  return std::strtod(text, nullptr);
}
}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string iso8601_utc(double unix_seconds) {
  const auto whole = static_cast<std::time_t>(unix_seconds);
  const int millis = std::min(999, static_cast<int>((unix_seconds - static_cast<double>(whole)) * 1000.0));
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char text[96];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  return text;
}

double resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) * 1024.0;  // kB
  return 0;
}

std::string to_json(const StepRecord& r) {
  // Insertion order kept: every record starts {"step":N, which the resume logic reads.
  nlohmann::ordered_json j;
  j["step"] = r.step + 1;
  j["timestamp"] = iso8601_utc(r.unix_time);
  j["loss"] = tidy(r.loss);
  j["lr"] = tidy(r.lr);
  j["grad_norm"] = r.grad_norm;
  j["tokens_per_s"] = r.tokens_per_s;
  j["flops_per_s"] = r.flops_per_s;
  j["mfu"] = r.mfu;
  if (!r.skipped.empty()) j["skipped"] = r.skipped;  // the step changed nothing (train.nonfinite = skip)
  j["memory"] = {{"rss", r.rss_bytes}, {"device", r.device_bytes}};
  if (r.spread) {
    const RankSpread& s = *r.spread;
    j["ranks"] = {{"slowest_s", s.slowest_s},         {"slowest_rank", s.slowest_rank},
                  {"fastest_s", s.fastest_s},         {"fastest_rank", s.fastest_rank},
                  {"max_rss", s.max_rss_bytes},       {"max_rss_rank", s.max_rss_rank},
                  {"max_device", s.max_device_bytes}};
  }
  j["time"] = {{"total", r.times.total},
               {"compute", r.times.compute},
               {"gather_wait", r.times.gather_wait},
               {"reduce_scatter", r.times.reduce_scatter},
               {"replica_all_reduce", r.times.replica_all_reduce},
               {"optimizer", r.times.optimizer}};
  nlohmann::ordered_json traffic = nlohmann::ordered_json::object();
  for (std::size_t k = 0; k < r.traffic.size(); ++k) {
    const comm::TrafficCounters& t = r.traffic[k];
    if (t.participants == 0) continue;
    traffic[std::string(topology::to_string(static_cast<topology::GroupKind>(k)))] = {
        {"collectives", t.collectives},
        {"bytes_sent", t.bytes_sent},
        {"bytes_received", t.bytes_received},
        {"bytes_sent_off_node", t.bytes_sent_off_node},
        {"participants", t.participants}};
  }
  j["traffic"] = std::move(traffic);
  return j.dump();
}

MetricsWriter::MetricsWriter(const std::string& path, long resumed_step) : path_(path) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  {
    std::ifstream in(path);
    std::string kept, line;
    while (std::getline(in, line)) {
      // Every record starts {"step":N,
      const long step = std::strtol(line.c_str() + std::min<std::size_t>(line.size(), 8), nullptr, 10);
      if (line.rfind("{\"step\":", 0) == 0 && step <= resumed_step) kept += line + '\n';
    }
    in.close();
    const std::string tmp = path + ".tmp";
    std::ofstream rewrite(tmp, std::ios::trunc);
    rewrite << kept;
    rewrite.close();
    if (!rewrite || std::rename(tmp.c_str(), path.c_str()) != 0)
      throw InputError("run.dir: cannot write metrics file '" + path + "'");
  }
  out_.open(path, std::ios::app);
  if (!out_) throw InputError("run.dir: cannot write metrics file '" + path + "'");
}

void MetricsWriter::write(const StepRecord& record) { write_line(to_json(record)); }

void MetricsWriter::write_validation(int step, float loss) {
  nlohmann::ordered_json j;
  j["step"] = step + 1;
  j["timestamp"] = iso8601_utc(unix_now());
  j["val_loss"] = tidy(loss);
  write_line(j.dump());
}

void MetricsWriter::write_checkpoint(const checkpoint::WriteReport& report) {
  nlohmann::ordered_json j;
  j["step"] = report.step;
  j["timestamp"] = iso8601_utc(unix_now());
  j["checkpoint"] = {{"path", report.path.string()}, {"bytes", report.bytes},     {"stall_s", report.stall_s},
                     {"write_s", report.write_s},    {"commit_s", report.commit_s}, {"mb_per_s", report.mb_per_s()}};
  write_line(j.dump());
}

void MetricsWriter::write_line(const std::string& json) {
  if (!out_.is_open()) return;
  out_ << json << '\n';
  out_.flush();
}

std::string format_duration(double seconds) {
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof(text), "%.1fs", seconds);
  } else {
    const long s = static_cast<long>(seconds + 0.5);
    if (s >= 3600)
      std::snprintf(text, sizeof(text), "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
    else
      std::snprintf(text, sizeof(text), "%ldm%02lds", s / 60, s % 60);
  }
  return text;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char text[32];
  std::snprintf(text, sizeof(text), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return text;
}

}  // namespace mics::training
