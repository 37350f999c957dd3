// Ranks agreeing on the outcome of work that may fail on some of them only (a file one node cannot
// read, a checksum one rank sees): after it, every rank knows whether anyone failed, and why.
#pragma once
#include <mpi.h>

#include <string>

namespace mics::comm {

// Collective over comm: `root`'s text on every rank (the others' `text` is ignored).
std::string broadcast_string(MPI_Comm comm, int root, std::string text);

// Collective over comm: the error message of the lowest rank that has one, on every rank; empty when
// every rank succeeded.
std::string first_error(MPI_Comm comm, const std::string& local_error);

}  // namespace mics::comm
