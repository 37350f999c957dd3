// mics plan: memory and step time of every configuration of a deck at a given scale (docs/planner.md).
// One process, no MPI: everything is computed from the deck, the hardware description and measurements.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.hpp"
#include "mics/config/config.hpp"
#include "mics/config/options.hpp"
#include "mics/model/gpt.hpp"
#include "mics/planner/planner.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"

namespace mics::cli {

namespace {

CommandSpec plan_spec() {
  CommandSpec spec(
      "mics plan",
      "mics plan --deck FILE --nodes N [--hardware NAME|FILE] [--calibration FILE]...\n"
      "                 [--recompute none|blocks|both] [--top K | --all] [--json]\n"
      "                 [--sweep-nodes N1,N2,... [--plot FILE.png]] [--section.key=value ...]",
      "Predicts, for every valid configuration of the deck's model on N nodes (ddp, zero3, mics with every\n"
      "partition size p, hierarchical gathers on/off, fp32/bf16 gathers, every micro-batch that keeps the\n"
      "deck's micro_batch x grad_accum sequences per GPU), the memory per GPU and the step time from the\n"
      "engine's own step schedule; sorted by predicted tokens/s among those that fit, then the rest.");
  spec.takes_deck();
  spec.options()
      ("nodes", po::value<std::string>()->value_name("N"), "the number of nodes")
      ("hardware", po::value<std::string>()->value_name("NAME|FILE")->default_value("p4d.24xlarge"),
       "a name from inputs/hardware (p3dn.24xlarge, p4d.24xlarge, p4de.24xlarge, p5.48xlarge, ...) "
       "or a hardware .ini file")
      ("calibration", po::value<std::vector<std::string>>()->value_name("FILE")->composing(),
       "JSON from `mics bench comm --json` or `bench_model --json`: measured alpha, bandwidth and FLOP "
       "rates replace the nominal ones (may be given more than once)")
      ("recompute", po::value<std::string>()->value_name("none|blocks|both")->default_value("both"),
       "activation recomputation to consider (blocks: modelled, not yet in the engine)")
      ("top", po::value<std::string>()->value_name("K")->default_value("20"), "rows to print")
      ("all", po::bool_switch(), "print every configuration")
      ("json", po::bool_switch(), "the whole plan as JSON on stdout")
      ("sweep-nodes", po::value<std::string>()->value_name("N1,N2,..."),
       "a weak-scaling table: the best of each strategy at each node count")
      ("plot", po::value<std::string>()->value_name("FILE.png"),
       "draw the --sweep-nodes table (needs python3 with matplotlib)");
  return spec;
}

int parse_int(const std::string& option, const std::string& text, int min, int max) {
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < min || v > max)
    throw InputError("option " + option + ": bad value '" + text + "' (expected an integer from " +
                     std::to_string(min) + " to " + std::to_string(max) + ")");
  return static_cast<int>(v);
}

std::vector<std::string> hardware_dirs() {
  std::vector<std::string> dirs{"inputs/hardware"};
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    dirs.push_back((exe.parent_path() / "../inputs/hardware").string());
    dirs.push_back((exe.parent_path() / "../share/mics/inputs/hardware").string());
  }
  return dirs;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// One configuration as JSON (nlohmann: escaping, and null for a NaN or infinity).
nlohmann::ordered_json prediction_json(const planner::Prediction& p) {
  const auto& m = p.memory;
  const auto& t = p.time;
  nlohmann::ordered_json j;
  j["config"] = p.label();
  j["strategy"] = std::string(config::to_string(p.plan.strategy));
  j["partition_size"] = p.plan.shape.partition_size;
  j["replicas"] = p.plan.shape.replicas;
  j["hierarchical"] = p.plan.hierarchical && p.plan.shape.spans_nodes();
  j["gather_dtype"] = p.plan.gather_bf16 ? "bf16" : "fp32";
  j["micro_batch"] = p.plan.micro_batch;
  j["grad_accum"] = p.plan.grad_accum;
  j["recompute"] = std::string(config::to_string(p.recompute));
  j["fits"] = m.fits;
  j["memory_gib"] = {{"model_states", m.engine.model_states / kGiB},
                     {"gathered", m.engine.gathered / kGiB},
                     {"gradients", (m.engine.gradients + m.engine.staging) / kGiB},
                     {"activations", m.activations / kGiB},
                     {"reserve", m.reserve / kGiB},
                     {"total", m.total / kGiB},
                     {"capacity", m.capacity / kGiB}};
  j["memory_verdict"] = m.verdict;
  j["step_s"] = t.step;
  j["compute_s"] = t.compute;
  j["optimizer_s"] = t.optimizer;
  j["exposed_comm_s"] = t.exposed;
  j["gather_busy_s"] = t.gather;
  j["reduce_scatter_busy_s"] = t.reduce_scatter;
  j["replica_busy_s"] = t.replicas;
  j["tokens_per_s"] = p.tokens_per_s;
  j["model_tflops_per_gpu"] = p.model_tflops_per_gpu;
  j["hardware_tflops_per_gpu"] = p.hardware_tflops_per_gpu;
  j["mfu"] = p.mfu;
  j["bytes_sent_per_step"] = {{"partition", t.bytes_partition},
                              {"inter_node", t.bytes_inter_node},
                              {"intra_node", t.bytes_intra_node},
                              {"replication", t.bytes_replication}};
  return j;
}

void print_table(const std::vector<planner::Prediction>& rows, std::size_t top, std::ostream& out) {
  char line[512];
  std::snprintf(line, sizeof line, "%-4s %-38s %4s | %7s %7s %7s %7s %7s | %8s %11s %7s %6s %6s\n", "#", "configuration",
                "fits", "states", "gather", "grads", "acts", "total", "step(s)", "tokens/s", "TFLOPS", "MFU",
                "comm%");
  out << line << std::string(137, '-') << "\n";
  for (std::size_t i = 0; i < rows.size() && i < top; ++i) {
    const planner::Prediction& p = rows[i];
    const auto& m = p.memory;
    std::snprintf(line, sizeof line,
                  "%-4zu %-38s %4s | %7.1f %7.1f %7.1f %7.1f %7.1f | %8.3f %11.0f %7.1f %5.1f%% %5.1f%%\n", i + 1,
                  p.label().c_str(), m.fits ? "yes" : "no", m.engine.model_states / kGiB, m.engine.gathered / kGiB,
                  (m.engine.gradients + m.engine.staging) / kGiB, m.activations / kGiB, m.total / kGiB, p.time.step,
                  p.tokens_per_s, p.model_tflops_per_gpu, 100 * p.mfu, 100 * p.time.exposed / p.time.step);
    out << line;
    if (!m.fits) out << "     " << m.verdict << "\n";
  }
  if (rows.size() > top) out << "(" << rows.size() - top << " more configurations; --all prints them)\n";
}

}  // namespace

// The plan itself, once the options are read; top 0: every row.
static int run_plan(const ParsedCommand& command_line, int nodes, const std::string& hardware_name,
             const std::vector<std::string>& calibrations, const std::vector<int>& sweep, const std::string& plot,
             const std::vector<planner::Recompute>& recompute, bool json, std::size_t top);

int plan_command(const Args& args) {
  const CommandSpec spec = plan_spec();
  const ParsedCommand command_line = spec.parse(args);
  if (command_line.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  int nodes = 0;
  std::string plot;
  std::vector<int> sweep;
  const std::string hardware_name = command_line.get<std::string>("hardware");
  std::vector<std::string> calibrations;
  if (command_line.has("calibration")) calibrations = command_line.get<std::vector<std::string>>("calibration");
  const bool json = command_line.get<bool>("json"), all = command_line.get<bool>("all");
  std::vector<planner::Recompute> recompute;
  std::size_t top = 20;
  try {
    if (command_line.has("nodes")) nodes = parse_int("--nodes", command_line.get<std::string>("nodes"), 1, 1 << 20);
    top = static_cast<std::size_t>(parse_int("--top", command_line.get<std::string>("top"), 1, 1 << 20));
    if (command_line.has("plot")) plot = command_line.get<std::string>("plot");
    const std::string v = command_line.get<std::string>("recompute");
    if (v == "none") recompute = {planner::Recompute::none};
    else if (v == "blocks") recompute = {planner::Recompute::blocks};
    else if (v == "both") recompute = {planner::Recompute::none, planner::Recompute::blocks};
    else throw InputError("option --recompute: bad value '" + v + "' (expected none, blocks or both)");
    if (command_line.has("sweep-nodes")) {
      std::stringstream list(command_line.get<std::string>("sweep-nodes"));
      std::string item;
      while (std::getline(list, item, ',')) sweep.push_back(parse_int("--sweep-nodes", item, 1, 1 << 20));
      if (sweep.empty()) throw InputError("option --sweep-nodes needs a list such as 16,32,64");
    }
  } catch (const InputError& e) {
    spec.fail(e.what());
  }
  return run_plan(command_line, nodes, hardware_name, calibrations, sweep, plot, recompute, json, all ? 0 : top);
}

static int run_plan(const ParsedCommand& command_line, int nodes, const std::string& hardware_name,
             const std::vector<std::string>& calibrations, const std::vector<int>& sweep, const std::string& plot,
             const std::vector<planner::Recompute>& recompute, bool json, std::size_t top) {
  const bool all = top == 0;
  if (!command_line.deck) throw InputError("mics plan needs --deck FILE");
  if (nodes == 0 && sweep.empty()) throw InputError("mics plan needs --nodes N (or --sweep-nodes N1,N2,...)");
  if (!plot.empty() && sweep.empty()) throw InputError("option --plot draws the --sweep-nodes table; give both");

  std::error_code ec;
  if (!std::filesystem::is_regular_file(*command_line.deck, ec))
    throw InputError("deck '" + *command_line.deck + "' is not a readable file");
  std::ifstream deck_file(*command_line.deck);
  std::stringstream deck_text;
  deck_text << deck_file.rdbuf();
  const config::Options options =
      config::read_options(config::Config::parse(deck_text.str(), *command_line.deck, command_line.overrides));
  const model::ModelSpec spec = model::resolve_model(options.model);

  planner::Hardware hardware = planner::load_hardware(hardware_name, hardware_dirs());
  for (const std::string& file : calibrations) planner::apply_calibration(hardware, file);

  planner::PlanRequest request;
  request.shape = spec.shape;
  request.seq_len = spec.seq_len;
  request.sequences_per_gpu = options.train.micro_batch * options.train.grad_accum;
  request.recompute = recompute;

  const double params = static_cast<double>(model::ParamLayout(spec.shape).total_numel());
  char header[512];
  std::snprintf(header, sizeof header,
                "model %s: %.4g B parameters, L=%d C=%d T=%d; %d sequences per GPU per step\n"
                "hardware %s (%s): %d GPUs/node, %.3g GiB, peak %.4g TFLOPS, compute at %.4g TFLOPS, "
                "intra %.4g GB/s + %.4g us, network %.4g GB/s per node + %.4g us\n",
                spec.preset.c_str(), params / 1e9, spec.shape.layers, spec.shape.channels, spec.seq_len,
                request.sequences_per_gpu, hardware.name.c_str(), hardware.file.c_str(), hardware.gpus_per_node,
                hardware.memory_bytes / kGiB, hardware.peak_flops / 1e12, hardware.flop_rate / 1e12,
                hardware.intra.bandwidth / 1e9, hardware.intra.alpha * 1e6, hardware.inter.bandwidth / 1e9,
                hardware.inter.alpha * 1e6);

  if (!sweep.empty()) {
    // Weak scaling: the per-GPU batch is the deck's at every size; the best of each strategy.
    struct Point {
      int nodes;
      std::vector<planner::Prediction> best;  // ddp, zero3, mics
    };
    // Each strategy's best configuration at the first size (one that fits if any does) is held fixed
    // (p, gathers, micro-batch, accumulation, recomputation; zero3's p grows with the world).
    std::vector<Point> points;
    std::vector<planner::Prediction> chosen;
    for (int n : sweep) {
      request.nodes = n;
      const auto rows = planner::plan_all(hardware, request);
      Point point{n, {}};
      if (chosen.empty()) {
        for (config::Strategy s : {config::Strategy::ddp, config::Strategy::zero3, config::Strategy::mics}) {
          for (const auto& r : rows)
            if (r.plan.strategy == s) {
              chosen.push_back(r);
              break;
            }
        }
      }
      for (const planner::Prediction& c : chosen) {
        for (const auto& r : rows) {
          const bool same_p = c.plan.strategy != config::Strategy::mics ||
                              r.plan.shape.partition_size == c.plan.shape.partition_size;
          if (r.plan.strategy == c.plan.strategy && same_p && r.plan.hierarchical == c.plan.hierarchical &&
              r.plan.gather_bf16 == c.plan.gather_bf16 && r.plan.micro_batch == c.plan.micro_batch &&
              r.recompute == c.recompute) {
            point.best.push_back(r);
            break;
          }
        }
      }
      points.push_back(point);
    }
    std::ostringstream table;
    table << header << "weak scaling: each strategy's best configuration at " << points.front().nodes
          << " nodes, held fixed; efficiency = TFLOPS per GPU relative to " << points.front().nodes << " nodes\n";
    char line[512];
    std::snprintf(line, sizeof line, "%6s %6s | %-40s %4s %11s %7s %7s\n", "nodes", "GPUs", "configuration", "fits",
                  "tokens/s", "TFLOPS", "weak");
    table << line << std::string(92, '-') << "\n";
    nlohmann::ordered_json js;
    js["hardware"] = hardware.name;
    js["model"] = spec.preset;
    js["points"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < points.size(); ++i) {
      for (std::size_t k = 0; k < points[i].best.size(); ++k) {
        const auto& p = points[i].best[k];
        double base = 0;
        for (const auto& q : points.front().best)
          if (q.plan.strategy == p.plan.strategy) base = q.model_tflops_per_gpu;
        const double weak = base > 0 ? p.model_tflops_per_gpu / base : 0;
        std::snprintf(line, sizeof line, "%6d %6d | %-40s %4s %11.0f %7.1f %6.1f%%\n", points[i].nodes,
                      p.plan.shape.world, p.label().c_str(), p.memory.fits ? "yes" : "no", p.tokens_per_s,
                      p.model_tflops_per_gpu, 100 * weak);
        table << line;
        js["points"].push_back({{"nodes", points[i].nodes},
                                {"gpus", p.plan.shape.world},
                                {"strategy", std::string(config::to_string(p.plan.strategy))},
                                {"weak_scaling", weak},
                                {"prediction", prediction_json(p)}});
      }
    }
    const std::string sweep_json = js.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (json) std::cout << sweep_json;
    else std::cout << table.str();
    if (!plot.empty()) {
      const std::string data = plot + ".json";
      std::ofstream(data) << sweep_json;
      std::string script = "bench/plot_plan_sweep.py";
      const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
      if (!std::filesystem::exists(script, ec) && !exe.empty())
        script = (exe.parent_path() / "../bench/plot_plan_sweep.py").string();
      // python3 first; Debian's own (where python3-matplotlib installs) when that one lacks matplotlib.
      const std::string args = " '" + script + "' '" + data + "' '" + plot + "'";
      const std::string command = "python3" + args + " 2>/dev/null || /usr/bin/python3" + args;
      if (std::system(command.c_str()) != 0)
        throw InputError("the plot could not be drawn (" + command + "); the table is in " + data);
      if (!json) std::cout << "plot: " << plot << "\n";
    }
    return kExitOk;
  }

  request.nodes = nodes;
  const std::vector<planner::Prediction> rows = planner::plan_all(hardware, request);
  const std::string advice = planner::recommendation(rows);
  if (json) {
    nlohmann::ordered_json js;
    js["hardware"] = hardware.name;
    js["model"] = spec.preset;
    js["nodes"] = nodes;
    js["gpus"] = nodes * hardware.gpus_per_node;
    js["recommendation"] = advice;
    js["configurations"] = nlohmann::ordered_json::array();
    for (const planner::Prediction& p : rows) js["configurations"].push_back(prediction_json(p));
    std::cout << js.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  std::cout << header;
  for (const std::string& c : hardware.calibrated) std::cout << "calibrated: " << c << "\n";
  std::cout << nodes << " nodes, " << nodes * hardware.gpus_per_node << " GPUs; memory in GiB per GPU, "
            << "TFLOPS = model FLOPs (6N + 6LCT per token) per GPU, comm% = step time spent waiting for "
            << "communication\n";
  print_table(rows, all ? rows.size() : top, std::cout);
  std::cout << advice << "\n";
  return kExitOk;
}

}  // namespace mics::cli
