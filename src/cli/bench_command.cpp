// mics bench comm: the collectives of the MiCS groups, measured the nccl-tests way.
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "mics/comm/bench.hpp"
#include "mics/log/log.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"

namespace mics::cli {

namespace {
constexpr const char* kBenchUsage =
    "usage: mpirun -np N mics bench comm [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS] [-w WARMUP]\n"
    "                                   [-c 0|1] [--json FILE] [--deck FILE] [--section.key=value ...]\n"
    "\n"
    "All-gather, reduce-scatter and all-reduce over the world, partition, replication, intra- and\n"
    "inter-node groups (flat and hierarchical all-gather side by side), with nccl-tests columns:\n"
    "size count type redop | time(us) algbw(GB/s) busbw(GB/s) #wrong. Sizes take K, M, G suffixes.\n"
    "--json FILE also writes every table as JSON: the calibration that `mics plan --calibration` reads.\n"
    "The groups come from the deck's [topology] and [parallel] sections, e.g.\n"
    "  mpirun -np 4 mics bench comm --topology.ranks_per_node=2 --parallel.partition_size=4\n";
}  // namespace

int bench_command(const Args& args) {
  if (args.empty() || args.front() == "--help" || args.front() == "-h") {
    std::fputs(kBenchUsage, stdout);
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (args.front() != "comm") {
    std::fprintf(stderr, "mics bench: unknown benchmark '%s'\n\n%s", args.front().c_str(), kBenchUsage);
    return kExitUsage;
  }
  const CommandLine command_line = split_command_line(Args(args.begin() + 1, args.end()));
  if (command_line.help) {
    std::fputs(kBenchUsage, stdout);
    return kExitOk;
  }
  MpiSession mpi;
  const comm::BenchOptions options = on_every_rank([&] {
    topology::check_slurm_world(mpi.size());
    return comm::parse_bench_options(command_line.rest);
  });
  const config::Options deck = load_options(command_line);
  const topology::Topology topology = topology::Topology::create(plan_for_world(deck, mpi.size()).shape);
  MICS_LOG(info) << "topology:\n" << topology.describe();
  const int wrong = comm::run_comm_benchmark(topology, options, std::cout);
  return wrong == 0 ? kExitOk : kExitFailure;
}

}  // namespace mics::cli
