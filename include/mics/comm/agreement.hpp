// Ranks agreeing on the outcome of work that may fail on some of them only (a file one node cannot read,
// a checksum one rank sees): afterwards every rank knows whether anyone failed, and why. Control messages
// on MPI directly: not part of any algorithm's traffic.
#pragma once
#include <mpi.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "mics/topology/group.hpp"
#include "mics/util/error.hpp"

namespace mics::comm {

using topology::Group;

// How long an agreement may wait for its peers: run.timeout, and optionally a probe of progress made
// where this rank can see it (wait_or_give_up in mpi_transport.hpp). A wait past the limit throws a
// PeerError naming `what` and the group's ranks.
struct Patience {
  std::chrono::milliseconds limit{0};  // 0: as long as it takes
  std::string what = "an agreement";
  std::function<bool()> progress;
};

// Collective over comm: `root`'s text on every rank (the others' `text` is ignored).
std::string broadcast_string(MPI_Comm comm, int root, std::string text);
std::string broadcast_string(const Group& group, int root, std::string text, const Patience& patience);

// A failure as it travels between ranks.
struct ErrorReport {
  ErrorKind kind = ErrorKind::input;
  std::string message;
};

// Collective over comm: the error of the lowest rank that has one, on every rank; nullopt when every rank
// succeeded.
std::optional<ErrorReport> first_error(MPI_Comm comm, const std::optional<ErrorReport>& local);
// The same for a message only (empty: this rank succeeded); the agreed message, empty when none failed.
std::string first_error(MPI_Comm comm, const std::string& local_error);
// The same over a group, each wait bounded by `patience`.
std::string first_error(const Group& group, const std::string& local_error, const Patience& patience);

// Runs `work` on every rank of comm; if it throws a mics::Error on any rank, every rank throws the lowest
// failing rank's error (its kind and message) as an all-ranks error. Errors other than mics::Error are
// not caught: they stop the job from the rank that saw them.
void agree(MPI_Comm comm, const std::function<void()>& work);

}  // namespace mics::comm
