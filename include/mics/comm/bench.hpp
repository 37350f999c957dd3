// `mics bench comm`: collective bandwidth over the MiCS groups, with nccl-tests conventions
// (docs/benchmarks.md#collective-bandwidth): sizes from -b to -e stepping by -f, -w warm-up then -n timed iterations, time per op
// averaged over ranks, algbw = S / t, busbw = algbw * (n-1)/n (all-gather, reduce-scatter) or
// 2(n-1)/n (all-reduce), #wrong = output elements that differ from the exactly computable result.
// Columns: size(B) is the whole gathered output / scattered input / reduced buffer; count is elements
// per rank for all-gather and reduce-scatter, elements of the buffer for all-reduce.
#pragma once
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "mics/topology/topology.hpp"

namespace mics::comm {

struct BenchOptions {
  std::size_t min_bytes = 8;         // -b
  std::size_t max_bytes = 1 << 20;   // -e
  std::size_t factor = 2;            // -f
  int iters = 20;                    // -n
  int warmup = 5;                    // -w
  bool check = true;                 // -c (0 skips verification)
  std::string json;                  // --json FILE: every table as JSON (the calibration `mics plan` reads)
};

// Accepts -b 8 -e 8M -f 2 -n 20 -w 5 -c 1 (and --minbytes, --maxbytes, --stepfactor, --iters,
// --warmup_iters, --check), and --json FILE. Sizes take K, M or G suffixes (powers of 1024). Throws mics::Error naming
// the option and value at fault.
BenchOptions parse_bench_options(const std::vector<std::string>& args);

// Collective over the topology's world. Runs all-gather, reduce-scatter and all-reduce over the world,
// partition, replication, intra- and inter-node groups (those that exist with more than one rank), and
// the hierarchical all-gather beside the flat one when the partition group spans nodes. The benchmark
// works on duplicates of the communicators, so the topology's traffic counters stay untouched.
// Rank 0 writes the tables to `out`. Returns the total #wrong (the same on every rank, capped at INT_MAX).
int run_comm_benchmark(const topology::Topology& topology, const BenchOptions& options, std::ostream& out);

}  // namespace mics::comm
