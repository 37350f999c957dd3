// The deck as typed option structs, one per section: read once from a validated Config (config.hpp), then
// handed down. Below the command line nothing reads a key by its string name. No MPI here: the CUDA
// kernels, built with CUDA alone, see these structs through the backend interface.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mics::config {

class Config;

// [parallel] strategy: the group shape handed to the one engine.
enum class Strategy { mics, zero3, ddp };
// An on/off choice that can also be left to mics (auto).
enum class Switch { automatic, on, off };
enum class GatherDtype { fp32, bf16 };
enum class Device { cpu, cuda };
enum class Matmul { automatic, bf16, fp32 };
// Which collectives move device memory on cuda: NCCL, MPI through pinned host buffers, or chosen by mics.
enum class DeviceCollectives { automatic, nccl, staged };
// train.recompute: which activations the backward pass recomputes instead of keeping
// (docs/algorithms.md#activation-recomputation). none: every block's; blocks: only each block's input is
// kept, and a block's forward runs again from it just before its backward.
enum class Recompute { none, blocks };

std::string_view to_string(Strategy strategy);
std::string_view to_string(Switch value);
std::string_view to_string(Device device);
std::string_view to_string(Recompute recompute);

struct RunOptions {
  std::string name;
  std::string dir;         // run directories root: metrics go to <dir>/<name>
  std::uint64_t seed = 0;
  double timeout_minutes = 0;  // a collective with no progress for this long fails; 0: no limit
};

struct LogOptions {
  std::string level;  // trace | debug | info | warning | error
  bool all_ranks = false;
  std::string file;   // per-rank file pattern, %r = rank; empty: none
};

struct TopologyOptions {
  int ranks_per_node = 0;  // 0: detected from MPI (shared-memory split)
};

struct ParallelOptions {
  Strategy strategy = Strategy::mics;
  int partition_size = 0;  // 0: ranks per node
  bool partition_size_set = false;  // given in the deck (ignored, with a note, by ddp and zero3)
  Switch hierarchical = Switch::automatic;
  GatherDtype gather_dtype = GatherDtype::fp32;
};

struct ModelOptions {
  std::string preset;
  std::optional<int> layers, heads, channels, vocab, seq_len;  // nullopt: the preset's
  // model.init: GPT-2 init from run.seed, or weights from an llm.c model file
  enum class Init { gpt2, llmc };
  Init init = Init::gpt2;
  std::string init_path;  // for llmc
  std::string init_text;  // as the deck wrote it, for messages
};

struct DataOptions {
  std::string train;  // glob of token shards
  std::string val;
  // shuffle: hashed random offsets (sampler.hpp); sequential: the shards in order, llm.c's windows
  enum class Order { shuffle, sequential };
  Order order = Order::shuffle;
};

struct TrainOptions {
  int steps = 0;
  int micro_batch = 1;
  int grad_accum = 1;
  double lr = 0;
  double min_lr_ratio = 0;
  int warmup_steps = 0;
  double weight_decay = 0;
  double beta1 = 0, beta2 = 0, eps = 0;
  double grad_clip = 0;  // 0: off
  int val_every = 0;     // 0: never
  int val_batches = 1;
  int log_every = 1;
  int skew_every = 0;  // 0: never
  enum class Resume { automatic, never, path };
  Resume resume = Resume::automatic;
  std::string resume_path;  // for Resume::path
  std::string save_final;   // empty: none
  Recompute recompute = Recompute::none;
  // train.nonfinite: what follows a step the numerics guard refused (nothing was updated either way)
  enum class NonFinite { stop, skip };
  NonFinite nonfinite = NonFinite::stop;
  int max_skipped_steps = 10;  // skips in a row before stopping anyway
};

struct BackendOptions {
  Device device = Device::cpu;
  int threads = 0;  // 0: OpenMP's default
  Matmul matmul = Matmul::automatic;
  DeviceCollectives collectives = DeviceCollectives::automatic;
};

struct CheckpointOptions {
  std::string dir;
  int every_steps = 0;
  double every_minutes = 0;
  int keep = 1;
  int keep_every = 0;
  bool at_end = true;               // a checkpoint after the last step
  double lock_stale_minutes = 60;   // heartbeat age after which another host's lock is stale
};

struct Options {
  RunOptions run;
  LogOptions log;
  TopologyOptions topology;
  ParallelOptions parallel;
  ModelOptions model;
  DataOptions data;
  TrainOptions train;
  BackendOptions backend;
  CheckpointOptions checkpoint;
  std::string effective_deck;  // every key, defaults included (Config::to_deck): logged and stored in checkpoints
};

// Every section of a validated configuration. Throws InputError naming the key for values the schema
// cannot express (model.init that is neither gpt2 nor llmc:PATH).
Options read_options(const Config& config);

}  // namespace mics::config
