#include "mics/training/trainer.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <sstream>

#include "mics/backends/backend.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/checkpoint/training.hpp"
#include "mics/data/sampler.hpp"
#include "mics/data/token_shard.hpp"
#include "mics/engine/engine.hpp"
#include "mics/engine/metrics.hpp"
#include "mics/log/log.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/optim/schedule.hpp"
#include "mics/util/error.hpp"
#if defined(MICS_WITH_CUDA)
#include "mics/backends/cuda/device_collectives.hpp"
#endif

namespace mics::training {

using engine::Engine;
using engine::EngineOptions;
using engine::MemoryReport;
using engine::MetricsWriter;
using engine::StepRecord;
using engine::StepResult;
using engine::StepTraffic;
using engine::format_bytes;
using engine::format_duration;

namespace {
using Clock = std::chrono::steady_clock;

int int_key(const config::Config& cfg, std::string_view key) { return static_cast<int>(cfg.get_int(key)); }

// Rank 0's traffic of one step, one group kind per entry, for the log.
std::string traffic_summary(const StepTraffic& traffic) {
  std::ostringstream os;
  bool first = true;
  for (std::size_t k = 0; k < traffic.size(); ++k) {
    const comm::TrafficCounters& t = traffic[k];
    if (t.participants <= 1 || t.collectives == 0 || static_cast<comm::GroupKind>(k) == comm::GroupKind::world) continue;
    os << (first ? "" : ", ") << comm::to_string(static_cast<comm::GroupKind>(k)) << ' '
       << format_bytes(static_cast<double>(t.bytes_sent)) << " in " << t.collectives << " ops";
    first = false;
  }
  return first ? std::string("none") : os.str();
}

void load_initial_weights(const std::string& init, const model::ParamLayout& layout, Engine& engine,
                          std::uint64_t seed) {
  if (init == "gpt2") {
    engine.init_parameters(seed);
    return;
  }
  if (init.rfind("llmc:", 0) != 0)
    throw Error("not understood (expected gpt2 or llmc:PATH)");  // the caller names the key
  const std::string path = init.substr(5);
  // The file's header is checked against the deck's model field by field while loading.
  std::vector<std::vector<float>> units(layout.units().size());
  for (std::size_t u = 0; u < units.size(); ++u) units[u].assign(layout.units()[u].numel, 0.0f);
  model::load_llmc_weights(path, layout, [&units](int unit) { return units[static_cast<std::size_t>(unit)].data(); });
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
// Runs `work` on every rank; if it throws mics::Error on any rank, every rank stops with the lowest
// failing rank's message (exit kExitUsage: the deck names something that does not work).
void agree_or_stop(topology::Topology& topology, const std::function<void()>& work) {
  std::string error;
  try {
    work();
  } catch (const Error& e) {
    error = e.what();
  }
  error = comm::first_error(topology.world().handle(), error);
  if (!error.empty()) fatal_all(error, kExitUsage);
}

}  // namespace

model::GptShape model_shape(const config::Config& cfg) {
  model::GptShape shape = model::preset_shape(cfg.get_string("model.preset"));
  const auto set = [&cfg](std::string_view key, int& field) {
    if (auto v = cfg.get_int_or_auto(key)) field = static_cast<int>(*v);
  };
  set("model.layers", shape.layers);
  set("model.heads", shape.heads);
  set("model.channels", shape.channels);
  set("model.vocab", shape.vocab);
  shape.padded_vocab = model::padded_vocab(shape.vocab);
  if (shape.channels % shape.heads != 0)
    throw Error("model.heads = " + std::to_string(shape.heads) + " does not divide model.channels = " +
                std::to_string(shape.channels));
  if (auto t = cfg.get_int_or_auto("model.seq_len"); t && *t > shape.max_seq_len)
    throw Error("model.seq_len = " + std::to_string(*t) + " exceeds the preset's maximum " +
                std::to_string(shape.max_seq_len));
  return shape;
}

int run_training(const config::Config& cfg, topology::Topology& topology, comm::Collectives& collectives) {
  const topology::Shape& shape = topology.shape();
  const int rank = topology.placement().world_rank;
  const model::GptShape model_dims = model_shape(cfg);
  const int T = static_cast<int>(cfg.get_int_or_auto("model.seq_len").value_or(model_dims.max_seq_len));
  const int B = int_key(cfg, "train.micro_batch");
  const int accum = int_key(cfg, "train.grad_accum");
  const int steps = int_key(cfg, "train.steps");
  const auto seed = static_cast<std::uint64_t>(cfg.get_int("run.seed"));

  EngineOptions options;
  options.micro_batch = B;
  options.grad_accum = accum;
  // ZeRO-3 is the flat baseline: one group of the whole world with flat gathers. MiCS decides by
  // parallel.hierarchical (auto: when its partition group spans nodes).
  const std::string hierarchical = cfg.get_string("parallel.hierarchical");
  const bool is_mics = cfg.get_string("parallel.strategy") == "mics";
  options.hierarchical = is_mics && (hierarchical == "on" || (hierarchical == "auto" && shape.spans_nodes()));
  if (hierarchical == "on" && !shape.spans_nodes()) {
    MICS_LOG(warning) << "parallel.hierarchical = on, but the partition group lies inside one node: "
                         "the flat all-gather is already hierarchical";
  }
  options.gather_bf16 = cfg.get_string("parallel.gather_dtype") == "bf16";
  options.weight_decay = static_cast<float>(cfg.get_float("train.weight_decay"));
  options.beta1 = static_cast<float>(cfg.get_float("train.beta1"));
  options.beta2 = static_cast<float>(cfg.get_float("train.beta2"));
  options.eps = static_cast<float>(cfg.get_float("train.eps"));
  options.grad_clip = static_cast<float>(cfg.get_float("train.grad_clip"));

  // Data first: a bad shard fails before any memory is committed. Every rank opens the shards itself
  // (a node may lack a file the others see), so the ranks agree on the outcome before going on.
  const int val_every = int_key(cfg, "train.val_every");
  std::unique_ptr<data::TokenDataset> train_data, val_data;
  std::unique_ptr<data::BatchSampler> train_sampler, val_sampler;
  agree_or_stop(topology, [&] {
    const auto open = [&](const char* key, std::unique_ptr<data::TokenDataset>& dataset,
                          std::unique_ptr<data::BatchSampler>& sampler) {
      try {
        dataset = std::make_unique<data::TokenDataset>(cfg.get_string(key));
        dataset->check_vocab(static_cast<std::uint32_t>(model_dims.vocab));
        sampler = std::make_unique<data::BatchSampler>(*dataset, T, seed);
      } catch (const Error& e) {
        throw Error(std::string(key) + " = " + cfg.get_string(key) + ": " + e.what());
      }
    };
    open("data.train", train_data, train_sampler);
    if (val_every > 0) open("data.val", val_data, val_sampler);
  });

  std::unique_ptr<backends::Backend> backend;
  agree_or_stop(topology, [&] {  // e.g. backend.device = cuda on a node without a GPU
    backend = backends::make_backend(cfg.get_string("backend.device"), int_key(cfg, "backend.threads"),
                                     cfg.get_string("backend.matmul"));
  });
  model::Gpt gpt(model_dims, *backend, B, T);
  // Device memory moves with NCCL (or host-staged MPI when ranks share GPUs); host memory with `collectives`.
  std::unique_ptr<comm::Collectives> device_collectives;
#if defined(MICS_WITH_CUDA)
  backends::cuda::DeviceCollectives device_choice = backends::cuda::DeviceCollectives::none;
  try {
    device_choice = backends::cuda::choose_device_collectives(*backend, topology);
  } catch (const Error& e) {
    fatal_all(e.what(), kExitUsage);  // the same on every rank (choose_device_collectives agrees first)
  }
  device_collectives = backends::cuda::make_device_collectives(device_choice, *backend, topology, collectives);
#endif
  Engine engine(gpt, *backend, device_collectives ? *device_collectives : collectives, topology, options);

  const std::size_t params = gpt.layout().total_numel();
  const double flops_per_token = model::Gpt::flops_per_token(model_dims, T);
  const std::size_t global_batch = static_cast<std::size_t>(B) * accum * shape.world;
  const MemoryReport memory = engine.memory();
  MICS_LOG(info) << "model: " << cfg.get_string("model.preset") << ", L=" << model_dims.layers
                 << " NH=" << model_dims.heads << " C=" << model_dims.channels << " V=" << model_dims.vocab
                 << " T=" << T << ", " << params << " parameters in " << gpt.layout().units().size() << " units";
  MICS_LOG(info) << "strategy " << cfg.get_string("parallel.strategy") << ": p=" << shape.partition_size
                 << " r=" << shape.replicas << ", all-gather " << (engine.hierarchical() ? "hierarchical" : "flat")
                 << (options.gather_bf16 && shape.partition_size > 1 ? " in bf16" : "")
                 << "; global batch " << global_batch << " sequences = micro_batch " << B << " x grad_accum "
                 << accum << " x " << shape.world << " ranks (" << global_batch * T << " tokens)";
  MICS_LOG(info) << "memory per rank: model states " << format_bytes(static_cast<double>(memory.model_states))
                 << " (16 B/param / p), gathered " << format_bytes(static_cast<double>(memory.gathered))
                 << ", gradient buffers " << format_bytes(static_cast<double>(memory.gradients + memory.staging))
                 << ", activations " << format_bytes(static_cast<double>(gpt.activation_bytes()));

  // A resumed run takes its states from the checkpoint and continues at its step.
  checkpoint::TrainingCheckpoints checkpoints(cfg, engine, *backend, topology, gpt.layout());
  int start_step = 0;
  std::int64_t tokens_seen = 0;
  if (const std::optional<checkpoint::ResumePoint> resumed = checkpoints.resume()) {
    start_step = static_cast<int>(resumed->step);
    tokens_seen = resumed->tokens_seen;
  } else {
    agree_or_stop(topology, [&] {
      try {
        load_initial_weights(cfg.get_string("model.init"), gpt.layout(), engine, seed);
      } catch (const Error& e) {
        throw Error("model.init = " + cfg.get_string("model.init") + ": " + e.what());
      }
    });
  }

  const optim::LrSchedule schedule(static_cast<float>(cfg.get_float("train.lr")), int_key(cfg, "train.warmup_steps"),
                                   steps, static_cast<float>(cfg.get_float("train.min_lr_ratio")));
  const std::string run_dir = cfg.get_string("run.dir") + "/" + cfg.get_string("run.name");
  MetricsWriter metrics;
  if (rank == 0) {
    metrics = MetricsWriter(run_dir + "/metrics.jsonl", start_step);
    MICS_LOG(info) << "metrics: " << metrics.path();
  }

  // Row b of this rank's micro-batch m is sequence (m * world + rank) * B + b of the global batch, so
  // the global batch is the same whatever the layout.
  const auto fill_rows = [&](int micro, std::int32_t* inputs, std::int32_t* targets, const auto& sequence) {
    for (int row = 0; row < B; ++row) {
      const std::uint64_t index = data::global_sequence_index(
          static_cast<std::uint64_t>(rank), static_cast<std::uint64_t>(shape.world), static_cast<std::uint64_t>(micro),
          static_cast<std::uint64_t>(B), static_cast<std::uint64_t>(row));
      sequence(index, inputs + static_cast<std::ptrdiff_t>(row) * T, targets + static_cast<std::ptrdiff_t>(row) * T);
    }
  };
  const auto train_batch = [&](int step) {
    return [&, step](int micro, std::int32_t* inputs, std::int32_t* targets) {
      fill_rows(micro, inputs, targets, [&](std::uint64_t index, std::int32_t* in, std::int32_t* out) {
        train_sampler->sequence(static_cast<std::uint64_t>(step), index, in, out);
      });
    };
  };
  const int val_batches = int_key(cfg, "train.val_batches");
  const auto validate = [&]() {
    const std::uint64_t count = static_cast<std::uint64_t>(val_batches) * shape.world * B;
    return engine.evaluate(val_batches, [&](int batch, std::int32_t* inputs, std::int32_t* targets) {
      fill_rows(batch, inputs, targets, [&](std::uint64_t index, std::int32_t* in, std::int32_t* out) {
        val_sampler->val_sequence(index, count, in, out);
      });
    });
  };

  const int log_every = int_key(cfg, "train.log_every");
  const Clock::time_point start = Clock::now();
  double tokens_done = 0, seconds_done = 0;
  float last_loss = 0, last_val = NAN;
  StepTraffic last_traffic{};
  for (int step = start_step; step < steps; ++step) {
    const float lr = schedule.lr_at(step);
    const StepResult result = engine.step(step, lr, train_batch(step));
    // The loss (averaged over the world) and the norm are the same on every rank: all stop together,
    // before a checkpoint could take the diverged states.
    if (!std::isfinite(result.loss) || !std::isfinite(result.grad_norm))
      fatal_all("training diverged at step " + std::to_string(step + 1) + ": loss " + std::to_string(result.loss) +
                    ", gradient norm " + std::to_string(result.grad_norm) +
                    " (the parameters were not updated; lower train.lr or set train.grad_clip)",
                kExitFailure);
    const double tokens = static_cast<double>(global_batch) * T;
    tokens_done += tokens;
    tokens_seen += static_cast<std::int64_t>(tokens);
    seconds_done += result.times.total;
    last_loss = result.loss;
    last_traffic = result.traffic;
    StepRecord record{step, steps, result.loss, lr, result.grad_norm, tokens / result.times.total,
                      tokens / result.times.total * flops_per_token, result.times, result.traffic};
    metrics.write(record);
    if ((step + 1) % log_every == 0 || step == 0 || step + 1 == steps) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const double eta = elapsed / (step + 1 - start_step) * (steps - step - 1);
      char line[256];
      std::snprintf(line, sizeof(line),
                    "step %d/%d | loss %.6f | lr %.3e | norm %.4f | %.0f tok/s | %.2f GFLOP/s | %.0f ms | ETA %s",
                    step + 1, steps, result.loss, lr, result.grad_norm, record.tokens_per_s,
                    record.flops_per_s / 1e9, result.times.total * 1e3, format_duration(eta).c_str());
      MICS_LOG(info) << line;
    }
    if (val_every > 0 && ((step + 1) % val_every == 0 || step + 1 == steps)) {
      last_val = validate();
      MICS_LOG(info) << "step " << step + 1 << " | val loss " << last_val;
      metrics.write_validation(step, last_val);
    }
    if (checkpoints.after_step(step + 1, tokens_seen, step + 1 == steps) ==
        checkpoint::TrainingCheckpoints::Next::stop_for_requeue)
      return kExitRequeue;
  }

  if (const std::string& path = cfg.get_string("train.save_final"); !path.empty())
    save_final_weights(path, gpt.layout(), engine, rank);

  if (start_step >= steps) {
    MICS_LOG(warning) << "nothing to train: the checkpoint resumed from is already at step " << start_step
                      << " of train.steps = " << steps
                      << " (raise train.steps, or start afresh with train.resume=never or another run.name)";
    return kExitOk;
  }
  std::ostringstream summary;
  summary << "done: " << steps << " steps, final loss " << last_loss;
  if (!std::isnan(last_val)) summary << ", val loss " << last_val;
  summary << ", " << static_cast<long>(seconds_done > 0 ? tokens_done / seconds_done : 0) << " tok/s; traffic per step on rank 0: "
          << traffic_summary(last_traffic);
  MICS_LOG(info) << summary.str();
  return kExitOk;
}

}  // namespace mics::training
