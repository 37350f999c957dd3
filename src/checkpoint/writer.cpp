#include "mics/checkpoint/writer.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "h5.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"
#include "mics/util/progress_watchdog.hpp"
#include "pieces.hpp"
#include "sharded_file.hpp"
#include "store.hpp"

namespace mics::checkpoint {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string minutes_text(std::chrono::milliseconds limit) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", std::chrono::duration<double>(limit).count() / 60.0);
  return text;
}

}  // namespace

void CheckpointWriter::reserve_staging(std::size_t elements) {
  if (elements <= staging_capacity_) return;
  // Page-aligned, each piece on a page of its own: the writer thread hands the pieces to O_DIRECT as they
  // are (sharded_file.cpp).
  const std::size_t bytes = (elements * sizeof(float) + 4095) / 4096 * 4096;
  staging_.reset(static_cast<float*>(std::aligned_alloc(4096, bytes)));
  if (!staging_) throw CheckpointError("checkpoint: cannot allocate " + std::to_string(bytes) + " bytes of staging memory");
  staging_capacity_ = bytes / sizeof(float);
  std::memset(staging_.get(), 0, bytes);  // the page faults now, not in a step's stall
}

void CheckpointWriter::prepare() { reserve_staging(staging_elements(mine_)); }

CheckpointWriter::CheckpointWriter(engine::Engine& engine, backends::Backend& backend,
                                   const topology::Topology& topology, const model::ParamLayout& layout,
                                   fs::path run_dir, Retention retention, IoPatience patience)
    : engine_(engine),
      backend_(backend),
      topology_(topology),
      layout_(layout),
      run_dir_(std::move(run_dir)),
      retention_(retention),
      patience_(std::move(patience)),
      plan_(piece_plan(layout, topology.shape().partition_size, topology.shape().replicas)) {
  const topology::Placement& place = topology.placement();
  if (place.world_rank != place.partition_group * topology.shape().partition_size + place.partition_rank)
    throw InternalError("checkpoint: partition groups are not consecutive ranks");
  for (const Piece& piece : plan_)
    if (piece.writer == place.world_rank) mine_.push_back(piece);
}

void CheckpointWriter::FreeDeleter::operator()(float* p) const noexcept { std::free(p); }

CheckpointWriter::~CheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void CheckpointWriter::start(const Metadata& metadata) {
  finish();
  const Clock::time_point begin = Clock::now();
  const topology::Placement& place = topology_.placement();
  const topology::Shape& shape = topology_.shape();
  const std::string what = "checkpoint at step " + std::to_string(metadata.step);
  const comm::Patience agreement{patience_.limit, "the agreement on the " + what, {}};
  metadata_ = metadata;
  metadata_.format_version = kFormatVersion;
  partial_dir_ = run_dir_ / (step_dir_name(metadata.step) + kPartialSuffix);

  std::string error;
  if (place.world_rank == 0) {
    try {
      std::error_code ec;
      fs::remove_all(partial_dir_, ec);  // a leftover of a crashed attempt at the same step
      fs::create_directories(partial_dir_);
      // Refused before anything is written: a file system that fills up in the middle of HDF5's writes
      // leaves the library with files it can neither flush nor close.
      // The tensors, plus HDF5's own structures (a few KiB per rank file, the index's mappings).
      const std::uintmax_t needed = 3 * sizeof(float) * layout_.total_numel() +
                                    (static_cast<std::uintmax_t>(shape.world) << 16) + (std::uintmax_t{256} << 10);
      const fs::space_info space = fs::space(partial_dir_);
      if (space.available < needed) {
        fs::remove_all(partial_dir_, ec);
        error = "no space left on the file system of " + run_dir_.string() + ": the checkpoint needs about " +
                std::to_string(needed >> 10) + " KiB, " + std::to_string(space.available >> 10) + " KiB are free";
      }
    } catch (const std::exception& e) {
      error = std::string("cannot create ") + partial_dir_.string() + ": " + e.what();
    }
  }
  error = comm::first_error(topology_.world(), error, agreement);
  if (!error.empty()) throw CheckpointError(what + " NOT written: " + error, ErrorScope::all_ranks);

  // This rank's pieces, staged as the plan lays them out.
  reserve_staging(staging_elements(mine_));
  for (const Piece& piece : mine_) {
    const int unit = piece.unit;
    const float* const shards[3] = {engine_.master_shard(unit), engine_.adam_m_shard(unit), engine_.adam_v_shard(unit)};
    backend_.copy_to_host(staging_.get() + piece.staging_offset, shards[piece.kind] + piece.shard_offset,
                          piece.numel() * sizeof(float));
  }

  const fs::path file = partial_dir_ / rank_file_name(place.world_rank);
  started_ = begin;
  state_.store(State::writing);
  error_.clear();
  thread_ = std::thread([this, file] {
    try {
      h5::QuietErrors quiet;
      write_rank_file(file, staging_.get(), mine_, layout_);
      written_after_s_ = seconds_since(started_);
      state_.store(State::written);
    } catch (const std::exception& e) {
      error_ = e.what();
      state_.store(State::failed);
    }
  });
  in_flight_ = true;
  stall_s_ = seconds_since(begin);
}

void CheckpointWriter::wait_here() {
  // This rank's own file, watched for growth: a write that progresses is never cut short.
  const fs::path file = partial_dir_ / rank_file_name(topology_.placement().world_rank);
  std::uintmax_t bytes = 0;
  Clock::time_point last_progress = Clock::now();
  while (state_.load() == State::writing) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::error_code ec;
    const std::uintmax_t now_bytes = fs::file_size(file, ec);
    if (!ec && now_bytes != bytes) {
      bytes = now_bytes;
      last_progress = Clock::now();
    }
    if (patience_.limit.count() > 0 && Clock::now() - last_progress > patience_.limit) {
      thread_.detach();  // stuck in I/O: it cannot be interrupted, and the job is about to stop
      throw PeerError("checkpoint at step " + std::to_string(metadata_.step) + ": writing " + file.string() +
                      " made no progress for " + minutes_text(patience_.limit) + " min (run.timeout; " +
                      std::to_string(bytes) + " bytes written): the file system is stuck");
    }
  }
  thread_.join();
}

void CheckpointWriter::finish() {
  if (!in_flight_) return;
  const std::string what = "checkpoint at step " + std::to_string(metadata_.step);
  wait_here();
  in_flight_ = false;
  std::string error = state_.load() == State::failed ? error_ : std::string();
  // Ranks whose share is written wait for the others as long as the checkpoint's files keep growing.
  std::uintmax_t written = 0;
  const comm::Patience while_written{patience_.limit,
                                     "waiting for the writers of the " + what + " (the files in " +
                                         partial_dir_.string() + " stopped growing)",
                                     [&] {
                                       const std::uintmax_t now = directory_file_bytes(partial_dir_);
                                       return std::exchange(written, now) != now;
                                     }};
  error = comm::first_error(topology_.world(), error, while_written);
  if (!error.empty())
    throw CheckpointError(what + " NOT written: " + error + "; the previous checkpoint stays the latest",
                          ErrorScope::all_ranks);
  // The write time is the slowest rank's, from its stall to its fsync: the step boundary at which the
  // ranks noticed that all had finished is not part of it.
  double write_s = written_after_s_;
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, &write_s, 1, MPI_DOUBLE, MPI_MAX, topology_.world().handle(), &request));
  comm::wait_or_give_up(request, patience_.limit, "the agreement on a checkpoint's write time", topology_.world());

  const Clock::time_point commit_start = Clock::now();
  const fs::path final_dir = run_dir_ / step_dir_name(metadata_.step);
  const bool world_root = topology_.placement().world_rank == 0;
  if (world_root) {
    try {
      h5::QuietErrors quiet;
      write_index_file(partial_dir_ / kStateFileName, metadata_, plan_, layout_);
      store::commit(partial_dir_, final_dir, run_dir_);
    } catch (const std::exception& e) {
      error = std::string("commit of ") + final_dir.string() + " failed: " + e.what();
    }
  }
  error = comm::first_error(topology_.world(), error, {patience_.limit, "the agreement on the " + what, {}});
  if (!error.empty())
    throw CheckpointError(what + " NOT written: " + error + "; the previous checkpoint stays the latest",
                          ErrorScope::all_ranks);
  MICS_LOG(info) << "checkpoint written: " << final_dir.string();
  if (world_root) {
    WriteReport report;
    report.step = metadata_.step;
    report.path = final_dir;
    report.bytes = directory_file_bytes(final_dir);
    report.stall_s = stall_s_;
    report.write_s = write_s;
    report.commit_s = seconds_since(commit_start);
    reports_.push_back(report);
    store::prune(run_dir_, retention_, metadata_.step);
  }
}


}  // namespace mics::checkpoint
