// Checkpoints of a training run (docs/checkpoint-format.md): one directory per checkpoint,
//   <checkpoint.dir>/<run.name>/step_<N>/state.h5   (committed)
//   <checkpoint.dir>/<run.name>/step_<N>.partial/   (being written, or abandoned by a crash)
//   <checkpoint.dir>/<run.name>/latest              ("step_<N>": the newest committed checkpoint)
//
// state.h5 holds every parameter and optimizer state as a dataset named after its tensor, with its
// global shape: /params/<name>, /adam_m/<name>, /adam_v/<name> (e.g. /params/h.3.attn.c_attn.weight
// [3C, C]), chunked with Fletcher32 checksums, plus root attributes: format_version, step, tokens_seen,
// sampler_position, seed, deck, schedule_*, model_*, topology_* (world, partition_size, replicas,
// ranks_per_node, strategy at save time). Nothing depends on the rank count, so any layout reads it.
//
// Writing: partition group 0 writes with parallel HDF5 (MPI-IO over its partition communicator,
// collective transfers), each rank its own shard as hyperslabs of the tensors it intersects. Every
// writer's status is reduced over the world; only then does world rank 0 fsync, rename the .partial
// directory into place, replace `latest` atomically and prune old checkpoints.
// Reading: every rank opens the file on its own and reads its shard's ranges, so a checksum error
// seen by one rank cannot leave its peers inside a collective; the ranks then agree on the outcome.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/engine/engine.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/topology.hpp"

namespace mics::checkpoint {

// 3: every rank writes a file of its own, state.h5 is the index (virtual datasets). 2: one state file with
// a metadata checksum. 1: the same without. Readers take all three.
inline constexpr std::int64_t kFormatVersion = 3;
inline constexpr std::int64_t kSingleFileFormatVersion = 2;
inline constexpr std::int64_t kOldestFormatVersion = 1;
// Root attribute: CRC-64/XZ of every other root attribute in a canonical text (metadata.cpp), as int64 bits.
inline constexpr const char* kMetadataChecksumAttribute = "metadata_crc64";
inline constexpr const char* kStateFileName = "state.h5";
inline constexpr const char* kLatestFileName = "latest";
inline constexpr const char* kPartialSuffix = ".partial";
// The three tensor groups of a state file, in the order they are written.
inline constexpr const char* kTensorGroups[] = {"params", "adam_m", "adam_v"};

// Fault injection for tests: milliseconds each writer rank sleeps after every dataset it writes,
// so a test can kill a rank while a checkpoint is being written.
inline constexpr const char* kWriteDelayEnv = "MICS_CHECKPOINT_WRITE_DELAY_MS";
// Fault injection for tests: the world rank named here fails after writing its first dataset (the job
// must stop, not hang, and keep `latest`).
inline constexpr const char* kWriteFailRankEnv = "MICS_CHECKPOINT_FAIL_RANK";
// For tests of old checkpoints: "2" makes the run write format 2 (one file, partition group 0, collective
// parallel HDF5, in the foreground), the format mics wrote before format 3.
inline constexpr const char* kWriteFormatEnv = "MICS_CHECKPOINT_WRITE_FORMAT";

// Everything a checkpoint records besides the tensors.
struct Metadata {
  std::int64_t format_version = kFormatVersion;
  std::int64_t step = 0;              // optimizer steps completed
  std::int64_t tokens_seen = 0;
  std::int64_t sampler_position = 0;  // the batch sampler is counter-based on (seed, step): = step
  std::int64_t seed = 0;
  std::string deck;                   // the effective deck (Config::to_deck)
  // Learning-rate schedule (a pure function of these and the step).
  double schedule_lr = 0;
  std::int64_t schedule_warmup_steps = 0;
  std::int64_t schedule_total_steps = 0;
  double schedule_min_lr_ratio = 0;
  model::GptShape model;
  // Topology at save time (informational: a checkpoint loads on any layout).
  std::int64_t world = 0;
  std::int64_t partition_size = 0;
  std::int64_t replicas = 0;
  std::int64_t ranks_per_node = 0;
  std::string strategy;
};

// A checkpoint directory of a run.
struct Entry {
  std::filesystem::path path;
  std::int64_t step = 0;
  bool committed = false;  // false: a .partial directory
};

// "step_<N>"
std::string step_dir_name(std::int64_t step);
// Every step_<N> and step_<N>.partial directory of a run directory, by step, committed after partial.
std::vector<Entry> list_checkpoints(const std::filesystem::path& run_dir);
// The directory `latest` names, when the pointer exists and names a step_<N> directory.
std::optional<std::filesystem::path> read_latest(const std::filesystem::path& run_dir);
// What `latest` holds (at most its first 200 bytes, raw: quote it with mics::printable) when it exists but
// names no step_<N> directory -- garbage from a hand edit or a disk fault -- so callers can say so rather
// than treat it as absent; nullopt when `latest` is absent or well formed.
std::optional<std::string> malformed_latest(const std::filesystem::path& run_dir);
// The state file of a checkpoint: PATH itself when it is a file, else PATH/state.h5.
std::filesystem::path state_file(const std::filesystem::path& checkpoint);

// How long checkpoint I/O may go without progress before the job is stopped (run.timeout; 0: no limit).
// Progress is a dataset finished or the checkpoint's files growing, so a long write never times out; a
// rank that is stopped or stuck does. The writers' watchdog thread calls `on_stall`, which must end the
// process (it runs while the main thread is inside collective HDF5 calls that cannot be interrupted).
struct IoPatience {
  std::chrono::milliseconds limit{0};
  std::function<void(const std::string& reason)> on_stall;
};

struct Retention {
  int keep = 2;        // newest committed checkpoints kept
  int keep_every = 0;  // also keep steps that are multiples of this; 0 = off
};

// Collective over the world: partition group 0 writes <run_dir>/step_<N>.partial/state.h5, every writer
// reports its status, then world rank 0 commits (fsync, rename, `latest`) and prunes per `retention`.
// A state holding a non-finite value is never written. Throws CheckpointError when nothing was committed
// (all ranks when they agreed on it; this rank only when a writer failed inside the file, whose peers
// are then inside collective HDF5 calls and the job must stop): `latest` still names the previous one.
void save(engine::Engine& engine, backends::Backend& backend, const topology::Topology& topology,
          const model::ParamLayout& layout, const Metadata& metadata, const std::filesystem::path& run_dir,
          const Retention& retention, const IoPatience& patience = {});

// The metadata of a state file (single process), its checksum verified. Throws mics::Error naming the
// file and attribute.
Metadata read_metadata(const std::filesystem::path& file);
std::uint64_t metadata_checksum(const Metadata& metadata);

// Collective over the world: every rank reads its shard of every unit from `checkpoint` (a step
// directory or state file) into the engine, whatever layout wrote it. Returns the checkpoint's
// metadata on every rank, or the first failing rank's error (naming the file and dataset) on every
// rank, in which case the engine's state is undefined and must be loaded again.
struct LoadResult {
  std::optional<Metadata> metadata;
  std::string error;
};
LoadResult load(const std::filesystem::path& checkpoint, engine::Engine& engine, backends::Backend& backend,
                const topology::Topology& topology, const model::ParamLayout& layout,
                const IoPatience& patience = {});

}  // namespace mics::checkpoint
