// Checkpoints written by every rank, in the background (format 3, docs/checkpoint-format.md).
//
// start() is the only stall: world rank 0 makes step_<N>.partial, and every rank copies its share of the
// state (1/r of its shard of every unit, params, adam_m and adam_v: pieces.hpp) into a host staging
// buffer. A thread of this rank then writes the share into shard_<rank>.h5 and fsyncs it while training
// goes on. When every rank's write has ended (the run loop's per-step agreement says so, or finish()
// waits for it), the ranks agree on the outcome; world rank 0 writes the index file state.h5 (metadata and
// virtual datasets), fsyncs and renames the directory into place and points `latest` at it. Nothing is
// `latest` until every writer has finished.
//
// Threads: the writer thread makes no MPI call (the serial HDF5 driver on its own file), and while it
// runs no other thread of the process calls HDF5 (HDF5 is not built thread-safe): the main thread's only
// HDF5 calls are loads at start and the index file, written after the writer thread has ended.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mics/checkpoint/checkpoint.hpp"

namespace mics::checkpoint {

struct Piece;  // src/checkpoint/pieces.hpp

// What a committed checkpoint cost, for the log and the metrics.
struct WriteReport {
  std::int64_t step = 0;
  std::filesystem::path path;
  std::uint64_t bytes = 0;    // every file of the checkpoint
  double stall_s = 0;         // the step's stall: staging (rank 0's)
  double write_s = 0;         // from start() until the slowest rank's file was written and synced
  double commit_s = 0;        // index file, fsync, rename, `latest`
  double mb_per_s() const { return write_s > 0 ? static_cast<double>(bytes) / write_s / 1e6 : 0; }
};

class CheckpointWriter {
 public:
  CheckpointWriter(engine::Engine& engine, backends::Backend& backend, const topology::Topology& topology,
                   const model::ParamLayout& layout, std::filesystem::path run_dir, Retention retention,
                   IoPatience patience);
  ~CheckpointWriter();  // waits for a write in flight (never committed from here)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Allocates and touches this rank's staging buffer now (12 bytes per parameter / world size of host
  // memory), so the first checkpoint does not stall on page faults. Local.
  void prepare();
  // Collective over the world: begins the checkpoint of the current state at metadata.step. A write still
  // in flight is finished first. Throws CheckpointError on every rank when the directory cannot be made.
  void start(const Metadata& metadata);
  bool in_flight() const { return in_flight_; }
  // This rank's part of the write in flight has ended (written or failed); true when none is in flight.
  bool ended_here() const { return !in_flight_ || state_.load() != State::writing; }
  // Collective over the world: waits until every rank's write ended, then commits the checkpoint or
  // throws CheckpointError on every rank (the first failure; `latest` still names the previous one). A
  // rank whose write makes no progress for run.timeout stops the job. No-op when nothing is in flight.
  void finish();
  // The reports of the checkpoints committed since the last call (world rank 0; empty elsewhere).
  std::vector<WriteReport> take_reports() { return std::exchange(reports_, {}); }

 private:
  enum class State { writing, written, failed };
  void wait_here();
  void reserve_staging(std::size_t elements);

  engine::Engine& engine_;
  backends::Backend& backend_;
  const topology::Topology& topology_;
  const model::ParamLayout& layout_;
  std::filesystem::path run_dir_;
  Retention retention_;
  IoPatience patience_;
  std::vector<Piece> plan_;  // every rank's pieces (the index maps them); fixed for the run
  std::vector<Piece> mine_;  // this rank's, in the order they are staged and written

  bool in_flight_ = false;
  Metadata metadata_;
  std::filesystem::path partial_dir_;
  std::chrono::steady_clock::time_point started_;
  double stall_s_ = 0;
  struct FreeDeleter {
    void operator()(float* p) const noexcept;
  };
  std::unique_ptr<float[], FreeDeleter> staging_;  // this rank's share, page-aligned; kept between checkpoints
  std::size_t staging_capacity_ = 0;                // elements
  std::atomic<State> state_{State::written};
  std::string error_;       // set by the writer thread before it stores State::failed
  double written_after_s_ = 0;  // set by the writer thread before it stores State::written: from start() on
  std::thread thread_;
  std::vector<WriteReport> reports_;
};

}  // namespace mics::checkpoint
