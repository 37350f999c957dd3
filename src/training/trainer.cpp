#include "mics/training/trainer.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>

#include "mics/backends/backend.hpp"
#include "mics/backends/transport.hpp"
#include "mics/checkpoint/run_lock.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/data/sampler.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/engine/engine.hpp"
#include "mics/log/log.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/optim/schedule.hpp"
#include "mics/training/checkpoints.hpp"
#include "mics/training/metrics.hpp"
#include "mics/training/stop_signals.hpp"
#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::training {

using engine::Engine;
using engine::StepResult;

namespace {
using Clock = std::chrono::steady_clock;

// Rank 0's traffic of one step, one group kind per entry, for the log.
std::string traffic_summary(const comm::Traffic& traffic) {
  std::ostringstream os;
  bool first = true;
  for (std::size_t k = 0; k < traffic.size(); ++k) {
    const comm::TrafficCounters& t = traffic[k];
    const auto kind = static_cast<topology::GroupKind>(k);
    if (t.participants <= 1 || t.collectives == 0 || kind == topology::GroupKind::world) continue;
    os << (first ? "" : ", ") << topology::to_string(kind) << ' ' << format_bytes(static_cast<double>(t.bytes_sent))
       << " in " << t.collectives << " ops";
    first = false;
  }
  return first ? std::string("none") : os.str();
}

engine::OptimizerOptions optimizer_options(const config::TrainOptions& train) {
  return {static_cast<float>(train.weight_decay), static_cast<float>(train.beta1), static_cast<float>(train.beta2),
          static_cast<float>(train.eps), static_cast<float>(train.grad_clip)};
}

void load_initial_weights(const config::ModelOptions& model, std::uint64_t seed, const model::ParamLayout& layout,
                          Engine& engine) {
  if (model.init == config::ModelOptions::Init::gpt2) {
    engine.init_parameters(seed);
    return;
  }
  // The file's header is checked against the deck's model field by field while loading.
  std::vector<std::vector<float>> units(layout.units().size());
  for (std::size_t u = 0; u < units.size(); ++u) units[u].assign(layout.units()[u].numel, 0.0f);
  try {
    model::load_llmc_weights(model.init_path, layout,
                             [&units](int unit) { return units[static_cast<std::size_t>(unit)].data(); });
  } catch (const Error& e) {
    throw InputError("model.init = " + model.init_text + ": " + e.what());
  }
  engine.set_parameters([&units](int unit) { return units[static_cast<std::size_t>(unit)].data(); });
}

// Gathers every unit and writes an llm.c model file from world rank 0.
// Every rank takes part in the gathers; only rank 0 holds the whole model on the host.
void save_final_weights(const std::string& path, const model::ParamLayout& layout, Engine& engine, int world_rank) {
  std::vector<std::vector<float>> units(layout.units().size());
  for (std::size_t u = 0; u < units.size(); ++u) {
    if (world_rank == 0) units[u].resize(layout.units()[u].numel);
    engine.gather_unit(static_cast<int>(u), world_rank == 0 ? units[u].data() : nullptr);
  }
  if (world_rank != 0) return;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  model::save_llmc_weights(path, layout, [&units](int unit) { return units[static_cast<std::size_t>(unit)].data(); });
  MICS_LOG(info) << "final weights written to " << path;
}

// The training and validation token streams. Every rank opens the shards itself (a node may lack a file
// the others see): the ranks agree on the outcome before going on.
struct Data {
  std::unique_ptr<data::TokenDataset> train, val;
  std::unique_ptr<data::BatchSampler> train_sampler, val_sampler;
};

Data open_data(const config::Options& options, const model::ModelSpec& model, std::uint64_t global_batch,
               MPI_Comm world) {
  Data d;
  comm::agree(world, [&] {
    const auto open = [&](const char* key, const std::string& pattern, std::unique_ptr<data::TokenDataset>& dataset,
                          std::unique_ptr<data::BatchSampler>& sampler, data::Order order) {
      try {
        dataset = std::make_unique<data::TokenDataset>(pattern);
        dataset->check_vocab(static_cast<std::uint32_t>(model.shape.vocab));
        sampler = std::make_unique<data::BatchSampler>(*dataset, model.seq_len, options.run.seed, order, global_batch);
      } catch (const Error& e) {
        throw InputError(std::string(key) + " = " + printable(pattern) + ": " + e.what());
      }
    };
    open("data.train", options.data.train, d.train, d.train_sampler, options.data.order);
    // Validation reads the same evenly spaced sequences in either order.
    if (options.train.val_every > 0) open("data.val", options.data.val, d.val, d.val_sampler, data::Order::shuffle);
  });
  return d;
}

// A directory this rank can create files in: made if missing, then probed with a file of its own.
void check_writable_directory(const std::string& key, const std::filesystem::path& dir, int rank) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec))
    throw InputError(key + " = " + dir.string() + ": cannot create the directory" + (ec ? ": " + ec.message() : ""));
  const fs::path probe = dir / (".mics-probe-" + std::to_string(rank) + "-" + std::to_string(::getpid()));
  std::FILE* file = std::fopen(probe.c_str(), "w");
  if (file == nullptr)
    throw InputError(key + " = " + dir.string() + ": not writable: " + std::strerror(errno));
  std::fclose(file);
  fs::remove(probe, ec);
}

// Before any memory is committed: every directory the run will write is writable from every rank, and
// the checkpoint directory has room for one checkpoint (12 bytes per parameter plus chunk overhead), so
// a bad path fails now, not after hours of training.
void check_output_paths(const config::Options& options, std::size_t parameters, int rank) {
  namespace fs = std::filesystem;
  check_writable_directory("run.dir", fs::path(options.run.dir) / options.run.name, rank);
  if (!options.train.save_final.empty()) {
    const fs::path parent = fs::path(options.train.save_final).parent_path();
    check_writable_directory("train.save_final", parent.empty() ? fs::path(".") : parent, rank);
  }
  const bool checkpoints =
      options.checkpoint.every_steps > 0 || options.checkpoint.every_minutes > 0 || options.checkpoint.at_end;
  if (!checkpoints) return;
  const fs::path dir = fs::path(options.checkpoint.dir) / options.run.name;
  check_writable_directory("checkpoint.dir", dir, rank);
  std::error_code ec;
  const fs::space_info space = fs::space(dir, ec);
  const double needed = 12.0 * static_cast<double>(parameters) * 1.05;
  if (!ec && static_cast<double>(space.available) < needed)
    throw InputError("checkpoint.dir = " + options.checkpoint.dir + ": " + format_bytes(static_cast<double>(space.available)) +
                     " free, one checkpoint needs about " + format_bytes(needed));
}

// Bytes this node can still give its ranks: MemAvailable, and below it the cgroup's limit (v2) if set.
std::size_t host_memory_available() {
  std::size_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    std::size_t kib = 0;
    std::string unit;
    meminfo >> kib >> unit;
    if (key == "MemAvailable:") available = kib * 1024;
  }
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  std::size_t current = 0;
  if (max_file >> max_text && max_text != "max" && current_file >> current) {
    const std::size_t limit = std::stoull(max_text);
    available = std::min(available, limit > current ? limit - current : 0);
  }
  return available;
}

// Before anything is allocated: the plan must fit in what each rank has (free device memory on cuda) or
// what the node has for all its ranks (host memory), or every rank stops with the estimate and what would
// make it fit, instead of an allocation failure or an out-of-memory kill with no message.
// `checkpoint_staging`: host bytes per rank the background checkpoint writer stages the rank's share in.
void check_memory_fits(const engine::MemoryReport& planned, const topology::ParallelPlan& plan,
                       const config::TrainOptions& train, backends::Backend& backend, std::size_t checkpoint_staging) {
  const std::optional<std::size_t> device_free = backends::device_memory_free(backend);
  const std::size_t ranks = device_free ? 1 : static_cast<std::size_t>(plan.shape.ranks_per_node);
  const std::size_t have = device_free ? *device_free : host_memory_available();
  const std::size_t per_rank = planned.total() + (device_free ? 0 : checkpoint_staging);
  const double need = static_cast<double>(per_rank) * static_cast<double>(ranks);
  if (have == 0 || need <= static_cast<double>(have)) return;
  std::ostringstream os;
  os << "the memory plan needs " << format_bytes(static_cast<double>(per_rank)) << " per rank (model states "
     << format_bytes(static_cast<double>(planned.model_states)) << ", gathered "
     << format_bytes(static_cast<double>(planned.gathered)) << ", gradient buffers "
     << format_bytes(static_cast<double>(planned.gradients + planned.staging)) << ", activations "
     << format_bytes(static_cast<double>(planned.activations));
  if (!device_free && checkpoint_staging > 0)
    os << ", checkpoint staging " << format_bytes(static_cast<double>(checkpoint_staging));
  os << ")";
  if (ranks > 1) os << ", " << format_bytes(need) << " for the " << ranks << " ranks of a node";
  os << ", but " << (device_free ? "the GPU has " : "the node has ") << format_bytes(static_cast<double>(have))
     << " available. To fit: a larger parallel.partition_size (now " << plan.shape.partition_size
     << ") shards the model states over more ranks; a smaller train.micro_batch (now " << plan.micro_batch
     << ") shrinks the activations";
  if (train.recompute == config::Recompute::none) os << "; train.recompute = blocks keeps one block's activations";
  throw InputError(os.str());
}

void log_setup(const RunSetup& s, const model::Gpt& gpt, const engine::MemoryReport& memory, std::string_view transport,
               config::Recompute recompute) {
  const model::GptShape& m = s.model.shape;
  MICS_LOG(info) << "model: " << s.model.preset << ", L=" << m.layers << " NH=" << m.heads << " C=" << m.channels
                 << " V=" << m.vocab << " T=" << s.model.seq_len << ", " << gpt.layout().total_numel()
                 << " parameters in " << gpt.layout().units().size() << " units";
  MICS_LOG(info) << "plan: " << s.plan.describe() << " (" << s.plan.global_batch() * s.model.seq_len
                 << " tokens); collectives on " << transport;
  for (const std::string& note : s.plan.notes) MICS_LOG(warning) << note;
  MICS_LOG(info) << "memory per rank (planned before allocation): model states "
                 << format_bytes(static_cast<double>(memory.model_states))
                 << " (16 B/param / p), gathered " << format_bytes(static_cast<double>(memory.gathered))
                 << ", gradient buffers " << format_bytes(static_cast<double>(memory.gradients + memory.staging))
                 << ", activations " << format_bytes(static_cast<double>(memory.activations)) << " (recompute "
                 << config::to_string(recompute) << "), total " << format_bytes(static_cast<double>(memory.total()));
}

// World rank 0 takes the run's lock in its checkpoint directory (checkpoint/run_lock.hpp); every rank
// raises the same InputError, naming the holder, when another live run holds it.
checkpoint::RunLock take_run_lock(const config::Options& options, const std::filesystem::path& run_dir, int rank,
                                  MPI_Comm world) {
  checkpoint::RunLock lock;
  if (options.checkpoint.dir.empty()) return lock;
  std::string problem, note;
  const checkpoint::LockHolder me = checkpoint::this_process();
  if (rank == 0) {
    try {
      lock = checkpoint::RunLock::acquire(run_dir, me, options.checkpoint.lock_stale_minutes * 60.0,
                                          checkpoint::query_slurm_job, note);
    } catch (const Error& e) {
      problem = e.what();
    }
  }
  problem = comm::broadcast_string(world, 0, problem);
  if (!problem.empty()) throw InputError(problem, ErrorScope::all_ranks);
  if (!note.empty()) MICS_LOG(warning) << note;
  MICS_LOG(info) << "this run owns checkpoint directory " << run_dir.string() << " (lock "
                 << (run_dir / checkpoint::kLockFileName).string() << ": " << me.describe() << ")";
  return lock;
}

// The peak an MFU is measured against: measured (cpu) or looked up (cuda) on rank 0, broadcast.
backends::PeakRate agreed_peak(backends::Backend& backend, int rank, MPI_Comm world) {
  backends::PeakRate peak;
  if (rank == 0) peak = backends::peak_rate(backend);
  MICS_MPI_CHECK(MPI_Bcast(&peak.flops_per_s, 1, MPI_DOUBLE, 0, world));
  peak.source = comm::broadcast_string(world, 0, peak.source);
  return peak;
}

// The slowest and fastest rank's step time and the largest memory: one MPI_Allreduce (MAXLOC) on the
// world communicator itself, not through comm::Collectives, so the engine's traffic counters (and the
// bytes per group kind in the metrics) stay the step's own.
RankSpread rank_spread(double step_seconds, double rss, double device, int rank, MPI_Comm world) {
  struct Pair {
    double value;
    int rank;
  };
  Pair local[4] = {{step_seconds, rank}, {-step_seconds, rank}, {rss, rank}, {device, rank}};
  Pair global[4];
  MICS_MPI_CHECK(MPI_Allreduce(local, global, 4, MPI_DOUBLE_INT, MPI_MAXLOC, world));
  RankSpread spread;
  spread.slowest_s = global[0].value;
  spread.slowest_rank = global[0].rank;
  spread.fastest_s = -global[1].value;
  spread.fastest_rank = global[1].rank;
  spread.max_rss_bytes = global[2].value;
  spread.max_rss_rank = global[2].rank;
  spread.max_device_bytes = global[3].value;
  return spread;
}

// The numerics guard's verdict on a refused step (engine.hpp: nothing was updated). Returns the skips in a
// row so far; throws, on every rank alike, when the run must stop.
int refuse_nonfinite_step(const config::TrainOptions& train, int step, const StepResult& result, int skipped_in_row,
                          const std::filesystem::path& run_dir) {
  std::ostringstream what;
  what << "step " << step + 1 << ": the " << engine::to_string(result.nonfinite) << " is not finite (loss "
       << result.loss << ", gradient norm " << result.grad_norm;
  if (result.nonfinite == engine::NonFinite::update)
    what << "; the AdamW update would leave " << result.nonfinite_elements << " parameters or moments non-finite";
  what << "); no parameter or moment was changed";
  const bool skip = train.nonfinite == config::TrainOptions::NonFinite::skip;
  if (skip && skipped_in_row + 1 <= train.max_skipped_steps) {
    MICS_LOG(warning) << what.str() << ": skipping the step (train.nonfinite = skip; " << skipped_in_row + 1
                      << " in a row, at most train.max_skipped_steps = " << train.max_skipped_steps << ")";
    return skipped_in_row + 1;
  }
  what << (skip ? "; " + std::to_string(skipped_in_row + 1) + " steps in a row were not finite" : std::string());
  what << ". Every committed checkpoint in " << run_dir.string()
       << " holds finite states: lower train.lr, set train.grad_clip, or set train.nonfinite = skip";
  throw PeerError("training stopped at " + what.str(), ErrorScope::all_ranks);
}

// What turns a step's seconds into rates for the metrics.
struct Rates {
  double tokens_per_step = 0;
  double flops_per_token = 0;
  double world_peak_flops = 0;  // 0: unknown
};

StepRecord make_record(int step, int total_steps, float lr, const StepResult& result, const Rates& rates) {
  StepRecord record;
  record.step = step;
  record.total_steps = total_steps;
  record.loss = result.loss;
  record.lr = lr;
  record.grad_norm = result.grad_norm;
  record.tokens_per_s = rates.tokens_per_step / result.times.total;
  record.flops_per_s = record.tokens_per_s * rates.flops_per_token;
  record.times = result.times;
  if (result.nonfinite != engine::NonFinite::none) record.skipped = engine::to_string(result.nonfinite);
  record.traffic = result.traffic;
  record.unix_time = unix_now();
  record.mfu = rates.world_peak_flops > 0 ? record.flops_per_s / rates.world_peak_flops : 0;
  return record;
}

// The console line of a step (and of the ranks' spread when measured).
void log_step(const StepRecord& record, double eta_seconds) {
  char line[320];
  std::snprintf(line, sizeof(line),
                "step %d/%d | loss %.6f | lr %.3e | norm %.4f | %.0f tok/s | %.2f GFLOP/s | MFU %.1f%% | %.0f ms"
                " | RSS %s%s%s | ETA %s",
                record.step + 1, record.total_steps, record.loss, record.lr, record.grad_norm, record.tokens_per_s,
                record.flops_per_s / 1e9, record.mfu * 100.0, record.times.total * 1e3,
                format_bytes(record.rss_bytes).c_str(), record.device_bytes > 0 ? " | device " : "",
                record.device_bytes > 0 ? format_bytes(record.device_bytes).c_str() : "",
                format_duration(eta_seconds).c_str());
  MICS_LOG(info) << line;
  if (record.spread)
    MICS_LOG(info) << "step " << record.step + 1 << " | step time slowest " << record.spread->slowest_s * 1e3
                   << " ms (rank " << record.spread->slowest_rank << "), fastest " << record.spread->fastest_s * 1e3
                   << " ms (rank " << record.spread->fastest_rank << "); largest RSS "
                   << format_bytes(record.spread->max_rss_bytes) << " (rank " << record.spread->max_rss_rank << ")";
}

// A committed checkpoint's cost, on the console and in the metrics (world rank 0).
void log_checkpoint(const checkpoint::WriteReport& report, MetricsWriter& metrics) {
  char line[200];
  std::snprintf(line, sizeof(line),
                "checkpoint step %lld: %llu bytes, stall %.3f s, written in %.3f s (%.1f MB/s), commit %.3f s",
                static_cast<long long>(report.step), static_cast<unsigned long long>(report.bytes), report.stall_s,
                report.write_s, report.mb_per_s(), report.commit_s);
  MICS_LOG(info) << line;
  metrics.write_checkpoint(report);
}

}  // namespace

int run_training(const RunSetup& s) {
  const config::Options& options = s.options;
  const config::TrainOptions& train = options.train;
  const topology::ParallelPlan& plan = s.plan;
  const MPI_Comm world = s.topology.world().handle();
  const int rank = s.topology.placement().world_rank;
  const int B = plan.micro_batch;
  const int T = s.model.seq_len;

  // Data and output paths first: a bad shard or directory fails before any memory is committed.
  Data data = open_data(options, s.model, static_cast<std::uint64_t>(plan.global_batch()), world);
  if (options.data.order == config::DataOptions::Order::sequential)
    MICS_LOG(info) << "data.order = sequential: " << data.train_sampler->steps_per_epoch()
                   << " steps per pass over " << options.data.train << " (" << plan.global_batch() << " x " << T
                   << " + 1 tokens per step)";
  comm::agree(world, [&] {
    check_output_paths(options, model::ParamLayout(s.model.shape).total_numel(), rank);
  });
  std::unique_ptr<backends::Backend> backend;
  comm::agree(world, [&] {  // e.g. backend.device = cuda on a node without a GPU
    backend = backends::make_backend(options.backend);
  });
  // The memory plan, from the sizes alone, before the model and the engine allocate anything.
  const engine::MemoryReport planned = engine::expected_memory(model::ParamLayout(s.model.shape), plan.shape.partition_size,
                                                               plan.gather_bf16, {B, T, train.recompute});
  const config::CheckpointOptions& ckpt = options.checkpoint;
  const bool checkpointing = !ckpt.dir.empty() && (ckpt.every_steps > 0 || ckpt.every_minutes > 0 || ckpt.at_end);
  const std::size_t staging =
      checkpointing ? 3 * sizeof(float) * model::ParamLayout(s.model.shape).total_numel() / plan.shape.world : 0;
  comm::agree(world, [&] { check_memory_fits(planned, plan, train, *backend, staging); });
  model::Gpt gpt(s.model.shape, *backend, B, T, train.recompute);
  // Device memory moves on its own transport (NCCL, or MPI through pinned buffers); host memory on MPI.
  const std::unique_ptr<comm::Transport> device_transport =
      backends::make_data_transport(*backend, s.topology, s.mpi, options.backend.collectives, s.on_unrecoverable);
  comm::Transport& data_transport = device_transport ? *device_transport : s.mpi;
  comm::Collectives collectives(data_transport, s.mpi);
  Engine engine(gpt, *backend, collectives, s.topology, plan, optimizer_options(train));
  log_setup(s, gpt, planned, data_transport.name(), train.recompute);
  const engine::MemoryReport allocated = engine.memory();
  if (allocated.total() != planned.total())
    MICS_LOG(warning) << "memory per rank as allocated (" << format_bytes(static_cast<double>(allocated.total()))
                      << ") differs from the plan";

  // A resumed run takes its states from the checkpoint and continues at its step.
  const StopSignals signals;
  const checkpoint::IoPatience io_patience{
      std::chrono::milliseconds(static_cast<long long>(options.run.timeout_minutes * 6e4)), s.on_unrecoverable};
  RunCheckpoints checkpoints(options, plan, engine, *backend, s.topology, gpt.layout(), signals, io_patience);
  const checkpoint::RunLock lock = take_run_lock(options, checkpoints.run_dir(), rank, world);
  int start_step = 0;
  std::int64_t tokens_seen = 0;
  if (const std::optional<ResumePoint> resumed = checkpoints.resume()) {
    start_step = static_cast<int>(resumed->step);
    tokens_seen = resumed->tokens_seen;
  } else {
    comm::agree(world, [&] { load_initial_weights(options.model, options.run.seed, gpt.layout(), engine); });
  }

  const optim::LrSchedule schedule(static_cast<float>(train.lr), train.warmup_steps, train.steps,
                                   static_cast<float>(train.min_lr_ratio));
  MetricsWriter metrics;
  if (rank == 0) {
    metrics = MetricsWriter(options.run.dir + "/" + options.run.name + "/metrics.jsonl", start_step);
    MICS_LOG(info) << "metrics: " << metrics.path();
  }

  // Row b of this rank's micro-batch m is sequence (m * world + rank) * B + b of the global batch, so
  // the global batch is the same whatever the layout.
  const int world_size = plan.shape.world;
  const auto fill_rows = [&](int micro, std::int32_t* inputs, std::int32_t* targets, const auto& sequence) {
    for (int row = 0; row < B; ++row) {
      const std::uint64_t index = data::global_sequence_index(
          static_cast<std::uint64_t>(rank), static_cast<std::uint64_t>(world_size), static_cast<std::uint64_t>(micro),
          static_cast<std::uint64_t>(B), static_cast<std::uint64_t>(row));
      sequence(index, inputs + static_cast<std::ptrdiff_t>(row) * T, targets + static_cast<std::ptrdiff_t>(row) * T);
    }
  };
  const auto train_batch = [&](int step) {
    return [&, step](int micro, std::int32_t* inputs, std::int32_t* targets) {
      fill_rows(micro, inputs, targets, [&](std::uint64_t index, std::int32_t* in, std::int32_t* out) {
        data.train_sampler->sequence(static_cast<std::uint64_t>(step), index, in, out);
      });
    };
  };
  const auto validate = [&]() {
    const std::uint64_t count = static_cast<std::uint64_t>(train.val_batches) * world_size * B;
    return engine.evaluate(train.val_batches, [&](int batch, std::int32_t* inputs, std::int32_t* targets) {
      fill_rows(batch, inputs, targets, [&](std::uint64_t index, std::int32_t* in, std::int32_t* out) {
        data.val_sampler->val_sequence(index, count, in, out);
      });
    });
  };

  const double flops_per_token = model::Gpt::flops_per_token(s.model.shape, T);
  const backends::PeakRate peak = agreed_peak(*backend, rank, world);
  const double world_peak = peak.flops_per_s * world_size;
  {
    char text[64];
    std::snprintf(text, sizeof(text), "%.1f GFLOP/s", peak.flops_per_s / 1e9);
    MICS_LOG(info) << "MFU: model FLOP/s over " << world_size << " ranks x " << text << " (" << peak.source << ")";
  }
  const double tokens_per_step = static_cast<double>(plan.global_batch()) * T;
  const Rates rates{tokens_per_step, flops_per_token, world_peak};
  const Clock::time_point start = Clock::now();
  double tokens_done = 0, seconds_done = 0;
  float last_loss = 0, last_val = NAN;
  comm::Traffic last_traffic{};
  int skipped_in_row = 0;
  for (int step = start_step; step < train.steps; ++step) {
    const float lr = schedule.lr_at(step);
    const StepResult result = engine.step(step, lr, train_batch(step));
    // The guard's outcome is the same on every rank: all skip or stop together, and no state that is not
    // finite ever reaches a checkpoint.
    if (result.nonfinite == engine::NonFinite::none) {
      skipped_in_row = 0;
    } else {
      try {
        skipped_in_row = refuse_nonfinite_step(train, step, result, skipped_in_row, checkpoints.run_dir());
      } catch (const Error&) {
        checkpoints.finish_writes();  // every rank stops here alike: the checkpoint in flight still commits
        throw;
      }
    }
    tokens_done += tokens_per_step;
    tokens_seen += static_cast<std::int64_t>(tokens_per_step);
    seconds_done += result.times.total;
    last_loss = result.loss;
    last_traffic = result.traffic;
    StepRecord record = make_record(step, train.steps, lr, result, rates);
    record.rss_bytes = resident_bytes();
    record.device_bytes = static_cast<double>(backends::device_memory_used(*backend));
    if (train.skew_every > 0 && ((step + 1) % train.skew_every == 0 || step + 1 == train.steps))
      record.spread = rank_spread(result.times.total, record.rss_bytes, record.device_bytes, rank, world);
    metrics.write(record);
    lock.heartbeat();
    if ((step + 1) % train.log_every == 0 || step == 0 || step + 1 == train.steps) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      log_step(record, elapsed / (step + 1 - start_step) * (train.steps - step - 1));
    }
    if (train.val_every > 0 && ((step + 1) % train.val_every == 0 || step + 1 == train.steps)) {
      last_val = validate();
      MICS_LOG(info) << "step " << step + 1 << " | val loss " << last_val;
      metrics.write_validation(step, last_val);
    }
    const RunCheckpoints::Next next = checkpoints.after_step(step + 1, tokens_seen, step + 1 == train.steps);
    for (const checkpoint::WriteReport& report : checkpoints.take_reports()) log_checkpoint(report, metrics);
    if (next == RunCheckpoints::Next::stop_for_requeue) return kExitRequeue;
  }

  if (!train.save_final.empty()) save_final_weights(train.save_final, gpt.layout(), engine, rank);

  if (start_step >= train.steps) {
    MICS_LOG(warning) << "nothing to train: the checkpoint resumed from is already at step " << start_step
                      << " of train.steps = " << train.steps
                      << " (raise train.steps, or start afresh with train.resume=never or another run.name)";
    return kExitOk;
  }
  std::ostringstream summary;
  summary << "done: " << train.steps << " steps, final loss " << last_loss;
  if (!std::isnan(last_val)) summary << ", val loss " << last_val;
  summary << ", " << static_cast<long>(seconds_done > 0 ? tokens_done / seconds_done : 0)
          << " tok/s; traffic per step on rank 0: " << traffic_summary(last_traffic);
  MICS_LOG(info) << summary.str();
  return kExitOk;
}

}  // namespace mics::training
