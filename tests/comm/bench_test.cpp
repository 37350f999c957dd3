// `mics bench comm` core: option parsing and a short run whose tables verify every output element.
#include <mpi.h>

#include "catch.hpp"
#include <sstream>
#include <string>

#include "mics/comm/bench.hpp"
#include "mics/util/error.hpp"
#include "mpi_world.hpp"

using mics::comm::BenchOptions;
using mics::comm::check_bench_options;
using mics::comm::parse_byte_size;
using mics::comm::run_comm_benchmark;
using mics::topology::Topology;

namespace {
template <class Work>
std::string error_of(Work work) {
  try {
    work();
  } catch (const mics::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

// The option table itself is the mics command's (src/cli/bench_command.cpp; tests/cli checks it).
TEST_CASE("bench sizes follow nccl-tests", "[bench]") {
  CHECK(parse_byte_size("-b", "8") == 8);
  CHECK(parse_byte_size("-e", "8M") == 8u << 20);
  CHECK(parse_byte_size("-e", "2G") == std::size_t{2} << 30);
  CHECK(parse_byte_size("-b", "1k") == 1024);
  CHECK_THAT(error_of([] { parse_byte_size("-e", "8X"); }), Catch::Contains("option -e: bad size '8X'"));
  CHECK_THAT(error_of([] { parse_byte_size("-b", "M"); }), Catch::Contains("option -b: bad size 'M'"));
  BenchOptions o;
  o.min_bytes = 64;
  o.max_bytes = 8;
  CHECK_THAT(error_of([&] { check_bench_options(o); }),
             Catch::Contains("maximum size 8 is smaller than the minimum size 64"));
  o.min_bytes = 0;
  CHECK_THAT(error_of([&] { check_bench_options(o); }), Catch::Contains("option -b"));
}

TEST_CASE("a short benchmark verifies every element and prints nccl-tests tables", "[bench][mpi]") {
  const int world = mics::test::world_size();
  // Emulated nodes of 2 ranks with p = world: the partition group spans nodes from 4 ranks on.
  const int rpn = world >= 4 ? 2 : 1;
  Topology topo = mics::test::topology(rpn, world);
  BenchOptions options;
  options.min_bytes = 8;
  options.max_bytes = 64;
  options.iters = 2;
  options.warmup = 1;
  mics::comm::MpiTransport mpi;
  std::ostringstream out;
  const int wrong = run_comm_benchmark(topo, options, mpi, mpi, nullptr, out);
  CHECK(wrong == 0);
  if (mics::test::world_rank() != 0) {
    CHECK(out.str().empty());
    return;
  }
  const std::string text = out.str();
  CHECK_THAT(text, Catch::Contains("# Out of bounds values : 0 OK"));
  if (world == 1) {
    CHECK_THAT(text, Catch::Contains("no group has more than one rank"));
    CHECK_THAT(text, !Catch::Contains("all_reduce over"));
    return;
  }
  CHECK_THAT(text, Catch::Contains("size(B)        count    type   redop    time(us)  algbw(GB/s)  busbw(GB/s)    #wrong"));
  CHECK_THAT(text, Catch::Contains("# Avg bus bandwidth    :"));
  // all_reduce over the world: 64 bytes = 16 floats, each of its 4 rows verified (#wrong 0).
  CHECK_THAT(text, Catch::Contains("all_reduce over world"));
  CHECK_THAT(text, Catch::Contains("              64           16   float     sum"));
  CHECK_THAT(text, Catch::Contains("reduce_scatter over partition groups"));
  if (world >= 4) {
    CHECK_THAT(text, Catch::Contains("all_gather over partition groups (flat)"));
    CHECK_THAT(text, Catch::Contains("all_gather over partition groups (hierarchical"));
    CHECK_THAT(text, Catch::Contains("reduce_scatter over partition groups (flat)"));
    CHECK_THAT(text, Catch::Contains("reduce_scatter over partition groups (hierarchical: intra-node, then inter-node)"));
    CHECK_THAT(text, Catch::Contains("all_gather over inter-node groups"));
    CHECK_THAT(text, Catch::Contains("all_gather over intra-node groups"));
  }
}
