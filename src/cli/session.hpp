// What every MPI subcommand does after parsing its command line (command_line.hpp): MPI up (RAII),
// logging up, and the deck loaded on rank 0 and broadcast.
#pragma once
#include <mpi.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/config/options.hpp"
#include "mics/topology/plan.hpp"

namespace mics::cli {

// Owns MPI for the life of a subcommand; finalizes on scope exit.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
};

// Loads the deck on rank 0 and broadcasts it, reads it into typed options and applies the log section.
// Every rank calls it; a bad deck throws the same InputError on every rank.
config::Options load_options(const ParsedCommand& command_line);

// The deck's run.timeout as the MPI transport's no-progress limit.
std::chrono::milliseconds no_progress_limit(const config::Options& options);

// The parallel plan for this world: ranks per node from the deck or detected (collective over
// MPI_COMM_WORLD), then topology::make_plan. Every rank throws the same InputError for an invalid layout.
topology::ParallelPlan plan_for_world(const config::Options& options, int world);

}  // namespace mics::cli
