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
#include <string_view>
#include <vector>

#include "mics/comm/collectives.hpp"
#include "mics/comm/mpi_transport.hpp"
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
  std::string device = "cpu";        // --device: where the buffers live (cpu: host memory on MPI)
};

// "8", "64K", "8M", "2G" (powers of 1024) as bytes; throws InputError naming `option` and the text.
std::size_t parse_byte_size(const std::string& option, const std::string& text);
// Throws InputError naming the option at fault: -b at least 1, -e not below -b.
void check_bench_options(const BenchOptions& options);

// Where the benchmark's buffers live, when not in host memory: the data transport moves this memory, and
// the benchmark fills and checks it through host copies.
class BenchMemory {
 public:
  virtual ~BenchMemory() = default;
  virtual std::string_view name() const = 0;  // "cuda"
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* memory) noexcept = 0;
  virtual void copy_from_host(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t bytes) = 0;
  // Every operation issued so far has finished (a device transport's wait() need not block the host).
  virtual void synchronize() = 0;
};

// Collective over the topology's world. Runs all-gather, reduce-scatter and all-reduce over the world,
// partition, replication, intra- and inter-node groups (those that exist with more than one rank), and
// the hierarchical all-gather beside the flat one when the partition group spans nodes. The benchmark
// works on duplicates of the communicators, so the topology's traffic counters stay untouched.
// `data` moves the buffers: `mpi` itself on host memory (`memory` null), or a device transport (NCCL,
// host-staged MPI) on `memory`; `mpi` times and checks. Rank 0 writes the tables to `out`. Returns the
// total #wrong (the same on every rank, capped at INT_MAX).
int run_comm_benchmark(const topology::Topology& topology, const BenchOptions& options, MpiTransport& mpi,
                       Transport& data, BenchMemory* memory, std::ostream& out);

}  // namespace mics::comm
