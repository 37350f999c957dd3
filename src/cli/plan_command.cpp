// mics plan: memory and step time of every configuration of a deck at a given scale (docs/planner.md).
// One process, no MPI: everything is computed from the deck, the hardware description and measurements.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
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

constexpr const char* kPlanUsage =
    "usage: mics plan --deck FILE --nodes N [--hardware NAME|FILE] [--calibration FILE]...\n"
    "                 [--recompute none|blocks|both] [--top K | --all] [--json]\n"
    "                 [--sweep-nodes N1,N2,... [--plot FILE.png]] [--section.key=value ...]\n"
    "\n"
    "Predicts, for every valid configuration of the deck's model on N nodes (ddp, zero3, mics with every\n"
    "partition size p, hierarchical gathers on/off, fp32/bf16 gathers, every micro-batch that keeps the\n"
    "deck's micro_batch x grad_accum sequences per GPU), the memory per GPU and the step time from the\n"
    "engine's own step schedule; sorted by predicted tokens/s among those that fit, then the rest.\n"
    "  --hardware      a name from inputs/hardware (p3dn.24xlarge, p4d.24xlarge, p4de.24xlarge,\n"
    "                  p5.48xlarge, ...) or a hardware .ini file; default p4d.24xlarge\n"
    "  --calibration   JSON from `mics bench comm --json` or `bench_model --json`: measured alpha, bandwidth\n"
    "                  and FLOP rates replace the nominal ones (may be given more than once)\n"
    "  --recompute     activation recomputation to consider (blocks: modelled, not yet in the engine)\n"
    "  --top K         rows to print (default 20); --all prints every configuration\n"
    "  --json          the whole plan as JSON on stdout\n"
    "  --sweep-nodes   a weak-scaling table: the best of each strategy at each node count;\n"
    "                  --plot FILE.png draws it (needs python3 with matplotlib)\n";

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

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string prediction_json(const planner::Prediction& p) {
  char buf[2048];
  const auto& m = p.memory;
  const auto& t = p.time;
  std::snprintf(
      buf, sizeof buf,
      "{\"config\": \"%s\", \"strategy\": \"%s\", \"partition_size\": %d, \"replicas\": %d, \"hierarchical\": %s, "
      "\"gather_dtype\": \"%s\", \"micro_batch\": %d, \"grad_accum\": %d, \"recompute\": \"%s\", "
      "\"fits\": %s, \"memory_gib\": {\"model_states\": %.3f, \"gathered\": %.3f, \"gradients\": %.3f, "
      "\"activations\": %.3f, \"reserve\": %.3f, \"total\": %.3f, \"capacity\": %.3f}, \"memory_verdict\": \"%s\", "
      "\"step_s\": %.6g, \"compute_s\": %.6g, \"optimizer_s\": %.6g, \"exposed_comm_s\": %.6g, \"gather_busy_s\": "
      "%.6g, \"reduce_scatter_busy_s\": %.6g, \"replica_busy_s\": %.6g, \"tokens_per_s\": %.6g, "
      "\"model_tflops_per_gpu\": %.4f, \"hardware_tflops_per_gpu\": %.4f, \"mfu\": %.4f, \"bytes_sent_per_step\": "
      "{\"partition\": %.6g, \"inter_node\": %.6g, \"intra_node\": %.6g, \"replication\": %.6g}}",
      p.label().c_str(), std::string(config::to_string(p.plan.strategy)).c_str(), p.plan.shape.partition_size,
      p.plan.shape.replicas, p.plan.hierarchical && p.plan.shape.spans_nodes() ? "true" : "false",
      p.plan.gather_bf16 ? "bf16" : "fp32", p.plan.micro_batch, p.plan.grad_accum,
      std::string(config::to_string(p.recompute)).c_str(), m.fits ? "true" : "false", m.engine.model_states / kGiB,
      m.engine.gathered / kGiB, (m.engine.gradients + m.engine.staging) / kGiB, m.activations / kGiB,
      m.reserve / kGiB, m.total / kGiB, m.capacity / kGiB, json_escape(m.verdict).c_str(), t.step, t.compute,
      t.optimizer, t.exposed, t.gather, t.reduce_scatter, t.replicas, p.tokens_per_s, p.model_tflops_per_gpu,
      p.hardware_tflops_per_gpu, p.mfu, t.bytes_partition, t.bytes_inter_node, t.bytes_intra_node,
      t.bytes_replication);
  return buf;
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

int plan_command(const Args& args) {
  const CommandLine command_line = split_command_line(args);
  if (command_line.help) {
    std::fputs(kPlanUsage, stdout);
    return kExitOk;
  }
  int nodes = 0;
  std::string hardware_name = "p4d.24xlarge", plot;
  std::vector<std::string> calibrations;
  std::vector<int> sweep;
  bool json = false, all = false;
  std::size_t top = 20;
  std::vector<planner::Recompute> recompute{planner::Recompute::none, planner::Recompute::blocks};
  const std::vector<std::string>& rest = command_line.rest;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    const std::string& option = rest[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= rest.size()) throw InputError("option " + option + " needs a value");
      return rest[++i];
    };
    if (option == "--nodes") {
      nodes = parse_int(option, value(), 1, 1 << 20);
    } else if (option == "--hardware") {
      hardware_name = value();
    } else if (option == "--calibration") {
      calibrations.push_back(value());
    } else if (option == "--json") {
      json = true;
    } else if (option == "--all") {
      all = true;
    } else if (option == "--top") {
      top = static_cast<std::size_t>(parse_int(option, value(), 1, 1 << 20));
    } else if (option == "--plot") {
      plot = value();
    } else if (option == "--recompute") {
      const std::string v = value();
      if (v == "none") recompute = {planner::Recompute::none};
      else if (v == "blocks") recompute = {planner::Recompute::blocks};
      else if (v == "both") recompute = {planner::Recompute::none, planner::Recompute::blocks};
      else throw InputError("option --recompute: bad value '" + v + "' (expected none, blocks or both)");
    } else if (option == "--sweep-nodes") {
      std::stringstream list(value());
      std::string item;
      while (std::getline(list, item, ',')) sweep.push_back(parse_int(option, item, 1, 1 << 20));
      if (sweep.empty()) throw InputError("option --sweep-nodes needs a list such as 16,32,64");
    } else {
      throw InputError("mics plan: unknown option '" + option + "' (see mics plan --help)");
    }
  }
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
    std::ostringstream js;
    js << "{\"hardware\": \"" << json_escape(hardware.name) << "\", \"model\": \"" << json_escape(spec.preset)
       << "\", \"points\": [";
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
        js << (i || k ? ", " : "") << "{\"nodes\": " << points[i].nodes << ", \"gpus\": " << p.plan.shape.world
           << ", \"strategy\": \"" << config::to_string(p.plan.strategy) << "\", \"weak_scaling\": " << weak
           << ", \"prediction\": " << prediction_json(p) << "}";
      }
    }
    js << "]}\n";
    if (json) std::cout << js.str();
    else std::cout << table.str();
    if (!plot.empty()) {
      const std::string data = plot + ".json";
      std::ofstream(data) << js.str();
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
    std::cout << "{\"hardware\": \"" << json_escape(hardware.name) << "\", \"model\": \"" << json_escape(spec.preset)
              << "\", \"nodes\": " << nodes << ", \"gpus\": " << nodes * hardware.gpus_per_node
              << ", \"recommendation\": \"" << json_escape(advice) << "\", \"configurations\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) std::cout << (i ? ",\n" : "") << prediction_json(rows[i]);
    std::cout << "\n]}\n";
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
