// What the collectives really asked MPI to do, observed at the MPI layer through its profiling interface
// (the test binary defines the MPI_ entry points below and forwards them to PMPI_), so traffic tests
// compare the typed layer's counters with calls they did not compute themselves.
// Each call is logged per communicator as the bytes this rank contributes (all-gather, all-reduce,
// broadcast root) or receives as its block (reduce-scatter), with the communicator's size.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <vector>

namespace mics::test {

struct MpiCall {
  enum class Op { all_gather, reduce_scatter, all_reduce, broadcast } op;
  MPI_Comm comm;
  int ranks;             // communicator size
  std::uint64_t bytes;   // per rank: all-gather sendbytes (or its block when in place), reduce-scatter
                         // block, all-reduce buffer, broadcast buffer
  bool root = false;     // broadcast: this rank sends
};

// The calls logged since the last take (non-blocking and blocking forms alike), oldest first.
std::vector<MpiCall> take_mpi_calls();

// Ring bytes this rank sends for one logged call: all-gather and reduce-scatter (n-1) blocks, all-reduce
// 2(n-1)/n of the buffer, broadcast the buffer from the root.
std::uint64_t ring_bytes_sent(const MpiCall& call);

}  // namespace mics::test
