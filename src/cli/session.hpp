// What every MPI subcommand does first: MPI up (RAII), logging up, the command line split into the
// deck, the --section.key=value overrides and the subcommand's own options, and the deck loaded on
// rank 0 and broadcast.
#pragma once
#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mics/config/config.hpp"

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

struct CommandLine {
  std::optional<std::string> deck;
  std::vector<std::string> overrides;  // "section.key=value"
  std::vector<std::string> rest;       // everything else, in order (positional and unknown options)
  bool help = false;
};

// Splits args; --deck FILE / --deck=FILE, --help / -h, --section.key=value. Never throws for the rest.
CommandLine split_command_line(const Args& args);

// Loads the deck on rank 0 and broadcasts it (bad deck: every rank exits with kExitUsage), then applies
// the log section. Every rank calls it.
config::Config load_config(const CommandLine& command_line);

}  // namespace mics::cli
