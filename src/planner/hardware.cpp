#include "mics/planner/hardware.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "mics/util/error.hpp"

namespace mics::planner {

namespace {

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string read_text(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw InputError(what + " '" + path + "' is not a readable file");
  std::ifstream in(path);
  if (!in) throw InputError(what + " '" + path + "' cannot be opened");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// section.key -> (value, line)
std::map<std::string, std::pair<std::string, int>> parse_ini(const std::string& text, const std::string& path) {
  std::map<std::string, std::pair<std::string, int>> out;
  std::istringstream in(text);
  std::string line, section;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line.back() != ']') throw InputError(path + ":" + std::to_string(number) + ": bad section '" + line + "'");
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string::npos)
      throw InputError(path + ":" + std::to_string(number) + ": expected key = value, got '" + line + "'");
    out[section + "." + trim(line.substr(0, eq))] = {trim(line.substr(eq + 1)), number};
  }
  return out;
}

using Json = nlohmann::json;

// The member `key` of an object, or nullptr (also when `object` is no object).
const Json* find(const Json& object, const std::string& key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

double number(const Json& object, const std::string& key, const std::string& path) {
  const Json* v = find(object, key);
  // A NaN or infinity was written as null: it is no measurement.
  if (!v || !v->is_number() || !std::isfinite(v->get<double>()))
    throw InputError("calibration file '" + path + "': missing or non-numeric \"" + key + "\"");
  return v->get<double>();
}

std::string string_field(const Json& object, const std::string& key, const std::string& path) {
  const Json* v = find(object, key);
  if (!v || !v->is_string())
    throw InputError("calibration file '" + path + "': missing string \"" + key + "\"");
  return v->get<std::string>();
}

}  // namespace

int off_node_senders(int world, int ranks_per_node, int size, int stride) {
  if (size <= 1) return 0;
  const int block = stride * size;
  int count = 0;
  for (int rank = 0; rank < std::min(ranks_per_node, world); ++rank) {
    const int index = (rank % block) / stride;
    const int base = rank - index * stride;
    const int successor = base + ((index + 1) % size) * stride;
    if (successor / ranks_per_node != rank / ranks_per_node) ++count;
  }
  return count;
}

std::vector<std::string> hardware_names(const std::vector<std::string>& search_dirs) {
  std::vector<std::string> names;
  for (const std::string& dir : search_dirs) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.path().extension() == ".ini") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

Hardware load_hardware(const std::string& name_or_file, const std::vector<std::string>& search_dirs) {
  std::string path;
  std::error_code ec;
  if (name_or_file.find('/') != std::string::npos || name_or_file.ends_with(".ini")) {
    path = name_or_file;
  } else {
    for (const std::string& dir : search_dirs) {
      const std::string candidate = dir + "/" + name_or_file + ".ini";
      if (std::filesystem::is_regular_file(candidate, ec)) {
        path = candidate;
        break;
      }
    }
    if (path.empty()) {
      std::string known;
      for (const std::string& n : hardware_names(search_dirs)) known += (known.empty() ? "" : ", ") + n;
      throw InputError("unknown hardware '" + name_or_file + "' (known: " + (known.empty() ? "none found" : known) +
                       "; or give the path of a hardware .ini file)");
    }
  }
  const auto ini = parse_ini(read_text(path, "hardware file"), path);
  auto get = [&](const std::string& key, double min, double max, std::optional<double> fallback = {}) {
    const auto it = ini.find(key);
    if (it == ini.end()) {
      if (fallback) return *fallback;
      throw InputError("hardware file '" + path + "': missing key " + key);
    }
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(it->second.first, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != it->second.first.size() || !(v >= min && v <= max))
      throw InputError(path + ":" + std::to_string(it->second.second) + ": " + key + " = '" + it->second.first +
                       "' (expected a number from " + std::to_string(min) + " to " + std::to_string(max) + ")");
    return v;
  };
  Hardware h;
  h.file = path;
  const auto name = ini.find("hardware.name");
  h.name = name != ini.end() ? name->second.first : std::filesystem::path(path).stem().string();
  h.gpus_per_node = static_cast<int>(get("hardware.gpus_per_node", 1, 1024));
  h.memory_bytes = get("hardware.memory_gib", 1e-6, 1e6) * 1024.0 * 1024.0 * 1024.0;
  h.peak_flops = get("hardware.peak_tflops", 1e-9, 1e6) * 1e12;
  h.flop_rate = h.peak_flops * get("hardware.flop_efficiency", 1e-6, 1.0);
  h.memory_bandwidth = get("hardware.memory_bandwidth_gbs", 1e-6, 1e6) * 1e9;
  h.intra.bandwidth = get("intra.bandwidth_gbs", 1e-9, 1e6) * 1e9 * get("intra.efficiency", 1e-6, 1.0, 1.0);
  h.intra.alpha = get("intra.latency_us", 0, 1e7) * 1e-6;
  h.inter.bandwidth = get("inter.bandwidth_gbps", 1e-9, 1e7) * 1e9 / 8 * get("inter.efficiency", 1e-6, 1.0, 1.0);
  h.inter.alpha = get("inter.latency_us", 0, 1e7) * 1e-6;
  h.overlap = get("software.overlap", 0, 1, 1.0);
  h.reserve_bytes = get("hardware.reserve_gib", 0, 1e6, 0.0) * 1024.0 * 1024.0 * 1024.0;
  h.step_overhead = get("software.step_overhead_ms", 0, 1e9, 0.0) * 1e-3;
  const auto algorithms = ini.find("software.collectives");
  if (algorithms != ini.end()) {
    if (algorithms->second.first == "ring") h.algorithms = Algorithms::ring;
    else if (algorithms->second.first == "libnbc") h.algorithms = Algorithms::libnbc;
    else
      throw InputError(path + ":" + std::to_string(algorithms->second.second) + ": software.collectives = '" +
                       algorithms->second.first + "' (expected ring or libnbc)");
  }
  return h;
}

void apply_calibration(Hardware& h, const std::string& path) {
  const std::string text = read_text(path, "calibration file");
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw InputError("calibration file '" + path + "': not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw InputError("calibration file '" + path + "': expected a JSON object");
  const std::string kind = string_field(root, "benchmark", path);
  if (kind == "model") {
    // bench_model --json: the compute rate of a training step and the optimizer's streaming rate.
    const Json* models = find(root, "models");
    if (!models || !models->is_array() || models->empty())
      throw InputError("calibration file '" + path + "': \"models\" must be a non-empty array");
    const Json& m = models->back();  // the largest model measured last
    const double flops = number(m, "compute_flops_per_s", path);
    const double bytes = number(m, "optimizer_bytes_per_s", path);
    if (flops <= 0 || bytes <= 0) throw InputError("calibration file '" + path + "': rates must be positive");
    h.flop_rate = flops;
    h.memory_bandwidth = bytes;
    // A CPU has no published peak: the measured rate is its ceiling (docs/benchmarks.md#training-throughput).
    if (h.peak_flops < flops) h.peak_flops = flops;
    h.calibrated.push_back("compute " + std::to_string(flops / 1e9) + " GFLOP/s and optimizer " +
                           std::to_string(bytes / 1e9) + " GB/s from " + path);
    return;
  }
  if (kind != "comm")
    throw InputError("calibration file '" + path + "': \"benchmark\" is '" + kind + "' (expected comm or model)");
  const int world = static_cast<int>(number(root, "world", path));
  const int rpn = static_cast<int>(number(root, "ranks_per_node", path));
  const int p = static_cast<int>(number(root, "partition_size", path));
  if (world < 1 || rpn < 1 || p < 1 || world % rpn || world % p)
    throw InputError("calibration file '" + path + "': inconsistent world/ranks_per_node/partition_size");
  const Json* tables = find(root, "tables");
  if (!tables || !tables->is_array())
    throw InputError("calibration file '" + path + "': \"tables\" must be an array");
  // Least squares per link class of  time per ring step = alpha + chunk / bandwidth.
  struct Fit {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int senders = 1;
  } fits[2];  // 0 intra, 1 inter
  for (const Json& t : *tables) {
    const std::string collective = string_field(t, "collective", path);
    const std::string group = string_field(t, "group", path);
    const int n = static_cast<int>(number(t, "ranks", path));
    if (group == "hierarchical" || n < 2) continue;
    int stride = 1;
    if (group == "replication") stride = p;
    else if (group == "inter-node") stride = std::min(p, rpn);
    else if (group != "world" && group != "partition" && group != "intra-node")
      throw InputError("calibration file '" + path + "': unknown group '" + group + "'");
    const int senders = off_node_senders(world, rpn, n, stride);
    Fit& f = fits[senders > 0 ? 1 : 0];
    if (senders > 0) f.senders = senders;
    const double steps = collective == "all_reduce" ? 2.0 * (n - 1) : n - 1.0;
    const Json* rows = find(t, "rows");
    if (!rows || !rows->is_array())
      throw InputError("calibration file '" + path + "': a table without \"rows\"");
    for (const Json& r : *rows) {
      const double chunk = number(r, "bytes", path) / n;
      const double tau = number(r, "time_us", path) * 1e-6 / steps;
      f.n += 1;
      f.sx += chunk;
      f.sy += tau;
      f.sxx += chunk * chunk;
      f.sxy += chunk * tau;
    }
  }
  const char* names[2] = {"intra-node", "inter-node"};
  Link* links[2] = {&h.intra, &h.inter};
  bool any = false;
  for (int c = 0; c < 2; ++c) {
    const Fit& f = fits[c];
    if (f.n < 2) continue;
    const double den = f.n * f.sxx - f.sx * f.sx;
    const double slope = den > 0 ? (f.n * f.sxy - f.sx * f.sy) / den : 0;
    if (!(slope > 0))
      throw InputError("calibration file '" + path + "': the " + names[c] +
                       " times do not grow with the size; cannot fit a bandwidth");
    const double alpha = std::max(0.0, (f.sy - slope * f.sx) / f.n);
    links[c]->alpha = alpha;
    links[c]->bandwidth = (c == 1 ? f.senders : 1) / slope;  // inter: the node's, shared by its senders
    h.calibrated.push_back(std::string(names[c]) + " alpha " + std::to_string(alpha * 1e6) + " us, bandwidth " +
                           std::to_string(links[c]->bandwidth / 1e9) + " GB/s from " + path);
    any = true;
  }
  if (!any) throw InputError("calibration file '" + path + "': no table with at least two sizes to fit");
}

}  // namespace mics::planner
