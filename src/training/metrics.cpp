#include "mics/training/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "mics/util/error.hpp"

namespace mics::training {

namespace {
std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.9g", value);
  return text;
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
  std::ostringstream os;
  os << "{\"step\":" << r.step + 1 << ",\"timestamp\":\"" << iso8601_utc(r.unix_time) << "\",\"loss\":" << number(r.loss) << ",\"lr\":" << number(r.lr)
     << ",\"grad_norm\":" << number(r.grad_norm) << ",\"tokens_per_s\":" << number(r.tokens_per_s)
     << ",\"flops_per_s\":" << number(r.flops_per_s) << ",\"mfu\":" << number(r.mfu)
     << ",\"memory\":{\"rss\":" << number(r.rss_bytes) << ",\"device\":" << number(r.device_bytes) << '}';
  if (r.spread) {
    const RankSpread& s = *r.spread;
    os << ",\"ranks\":{\"slowest_s\":" << number(s.slowest_s) << ",\"slowest_rank\":" << s.slowest_rank
       << ",\"fastest_s\":" << number(s.fastest_s) << ",\"fastest_rank\":" << s.fastest_rank
       << ",\"max_rss\":" << number(s.max_rss_bytes) << ",\"max_rss_rank\":" << s.max_rss_rank
       << ",\"max_device\":" << number(s.max_device_bytes) << '}';
  }
  os << ",\"time\":{\"total\":" << number(r.times.total)
     << ",\"compute\":" << number(r.times.compute) << ",\"gather_wait\":" << number(r.times.gather_wait)
     << ",\"reduce_scatter\":" << number(r.times.reduce_scatter)
     << ",\"replica_all_reduce\":" << number(r.times.replica_all_reduce)
     << ",\"optimizer\":" << number(r.times.optimizer) << "},\"traffic\":{";
  bool first = true;
  for (std::size_t k = 0; k < r.traffic.size(); ++k) {
    const comm::TrafficCounters& t = r.traffic[k];
    if (t.participants == 0) continue;
    os << (first ? "" : ",") << '"' << topology::to_string(static_cast<topology::GroupKind>(k)) << "\":{\"collectives\":"
       << t.collectives << ",\"bytes_sent\":" << t.bytes_sent << ",\"bytes_received\":" << t.bytes_received
       << ",\"bytes_sent_off_node\":" << t.bytes_sent_off_node << ",\"participants\":" << t.participants << '}';
    first = false;
  }
  os << "}}";
  return os.str();
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
  write_line("{\"step\":" + std::to_string(step + 1) + ",\"timestamp\":\"" + iso8601_utc(unix_now()) +
             "\",\"val_loss\":" + number(loss) + "}");
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
