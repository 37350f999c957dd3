// `mics bench comm` core: option parsing and a short run whose tables verify every output element.
#include <mpi.h>

#include "catch.hpp"
#include <sstream>
#include <string>

#include "mics/comm/bench.hpp"
#include "mics/util/error.hpp"
#include "mpi_world.hpp"

using mics::comm::BenchOptions;
using mics::comm::parse_bench_options;
using mics::comm::run_comm_benchmark;
using mics::topology::Topology;

namespace {
std::string parse_error(const std::vector<std::string>& args) {
  try {
    parse_bench_options(args);
  } catch (const mics::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("bench options follow nccl-tests", "[bench]") {
  const BenchOptions o = parse_bench_options({"-b", "8", "-e", "8M", "-f", "4", "-n", "20", "-w", "5", "-c", "0"});
  CHECK(o.min_bytes == 8);
  CHECK(o.max_bytes == 8u << 20);
  CHECK(o.factor == 4);
  CHECK(o.iters == 20);
  CHECK(o.warmup == 5);
  CHECK_FALSE(o.check);
  CHECK(parse_bench_options({"--maxbytes", "2G", "-b", "1K"}).max_bytes == std::size_t{2} << 30);
  CHECK(parse_bench_options({"-b", "1k"}).min_bytes == 1024);

  CHECK_THAT(parse_error({"-e", "8X"}), Catch::Contains("option -e: bad size '8X'"));
  CHECK_THAT(parse_error({"-b", "M"}), Catch::Contains("option -b: bad size 'M'"));
  CHECK_THAT(parse_error({"-n", "0"}), Catch::Contains("option -n: bad value '0'"));
  CHECK_THAT(parse_error({"-f", "1"}), Catch::Contains("option -f: bad value '1'"));
  CHECK_THAT(parse_error({"-w", "five"}), Catch::Contains("option -w: bad value 'five'"));
  CHECK_THAT(parse_error({"-b", "64", "-e", "8"}), Catch::Contains("maximum size 8 is smaller than the minimum size 64"));
  CHECK_THAT(parse_error({"-x", "1"}), Catch::Contains("unknown option '-x'"));
  CHECK_THAT(parse_error({"-b"}), Catch::Contains("option -b needs a value"));
}

TEST_CASE("a short benchmark verifies every element and prints nccl-tests tables", "[bench][mpi]") {
  const int world = mics::test::world_size();
  // Emulated nodes of 2 ranks with p = world: the partition group spans nodes from 4 ranks on.
  const int rpn = world >= 4 ? 2 : 1;
  Topology topo = mics::test::topology(rpn, world);
  const BenchOptions options = parse_bench_options({"-b", "8", "-e", "64", "-n", "2", "-w", "1", "-c", "1"});
  std::ostringstream out;
  const int wrong = run_comm_benchmark(topo, options, out);
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
