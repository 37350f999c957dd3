// mics bench comm: the collectives of the MiCS groups, measured the nccl-tests way, on host memory over MPI
// or on GPU memory over the transport training uses (NCCL, or host-staged MPI).
#include <cstdio>
#include <iostream>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/backends/backend.hpp"
#include "mics/backends/transport.hpp"
#include "mics/comm/agreement.hpp"
#include "mics/comm/bench.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/log/log.hpp"
#include "mics/topology/topology.hpp"
#include "mics/util/error.hpp"
#include "session.hpp"
#include "stop.hpp"

namespace mics::cli {

namespace {
CommandSpec bench_spec() {
  CommandSpec spec(
      "mics bench",
      "mpirun -np N mics bench comm [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [-n ITERS] [-w WARMUP]\n"
      "                                   [-c 0|1] [--device cpu|cuda] [--json FILE] [--deck FILE]\n"
      "                                   [--section.key=value ...]",
      "All-gather, reduce-scatter and all-reduce over the world, partition, replication, intra- and\n"
      "inter-node groups (flat and hierarchical all-gather side by side), with nccl-tests columns:\n"
      "size count type redop | time(us) algbw(GB/s) busbw(GB/s) #wrong. Sizes take K, M, G suffixes.");
  spec.positional("BENCHMARK", "comm: the collectives (the only benchmark)");
  spec.options()
      ("minbytes,b", po::value<std::string>()->value_name("SIZE")->default_value("8"), "smallest size")
      ("maxbytes,e", po::value<std::string>()->value_name("SIZE")->default_value("1M"), "largest size")
      ("stepfactor,f", po::value<int>()->value_name("FACTOR")->default_value(2), "size multiplier, 2 to 1024")
      ("iters,n", po::value<int>()->value_name("ITERS")->default_value(20), "timed iterations per size")
      ("warmup_iters,w", po::value<int>()->value_name("WARMUP")->default_value(5), "untimed iterations first")
      ("check,c", po::value<int>()->value_name("0|1")->default_value(1), "verify every result (#wrong)")
      ("device", po::value<std::string>()->value_name("cpu|cuda")->default_value("cpu"),
       "where the buffers live: cpu (host memory, MPI) or cuda (GPU memory over the transport training "
       "uses: NCCL, or host-staged MPI when ranks share a GPU or backend.collectives = staged)")
      ("json", po::value<std::string>()->value_name("FILE"),
       "also write every table as JSON: the calibration that `mics plan --calibration` reads");
  spec.takes_deck().epilog(
      "The groups come from the deck's [topology] and [parallel] sections, e.g.\n"
      "  mpirun -np 4 mics bench comm --topology.ranks_per_node=2 --parallel.partition_size=4\n"
      "  mpirun -np 8 mics bench comm --device cuda -b 8 -e 1G     # one GPU per rank, NCCL");
  return spec;
}

int in_range(const CommandSpec& spec, const ParsedCommand& parsed, const std::string& name, const std::string& flag,
             int min, int max) {
  const int value = parsed.get<int>(name);
  if (value < min || value > max)
    spec.fail("option " + flag + ": bad value '" + std::to_string(value) + "' (expected an integer from " +
              std::to_string(min) + " to " + std::to_string(max) + ")");
  return value;
}

comm::BenchOptions bench_options(const CommandSpec& spec, const ParsedCommand& parsed) {
  comm::BenchOptions options;
  try {
    options.min_bytes = comm::parse_byte_size("-b", parsed.get<std::string>("minbytes"));
    options.max_bytes = comm::parse_byte_size("-e", parsed.get<std::string>("maxbytes"));
    comm::check_bench_options(options);
  } catch (const InputError& e) {
    spec.fail(e.what());
  }
  options.factor = static_cast<std::size_t>(in_range(spec, parsed, "stepfactor", "-f", 2, 1024));
  options.iters = in_range(spec, parsed, "iters", "-n", 1, 1000000);
  options.warmup = in_range(spec, parsed, "warmup_iters", "-w", 0, 1000000);
  options.check = in_range(spec, parsed, "check", "-c", 0, 1000000) != 0;
  if (parsed.has("json")) options.json = parsed.get<std::string>("json");
  options.device = parsed.get<std::string>("device");
  if (options.device != "cpu" && options.device != "cuda")
    spec.fail("option --device: bad value '" + options.device + "' (expected cpu or cuda)");
#if !defined(MICS_WITH_CUDA)
  if (options.device == "cuda")
    spec.fail("--device cuda: this build has no CUDA backend (configure with -DMICS_CUDA=ON where nvcc and NCCL "
              "are installed), use --device cpu");
#endif
  return options;
}
}  // namespace

int bench_command(const Args& args) {
  const CommandSpec spec = bench_spec();
  const ParsedCommand parsed = spec.parse(args);
  if (parsed.help) {
    std::fputs(spec.usage().c_str(), stdout);
    return kExitOk;
  }
  if (parsed.positional.front() != "comm") spec.fail("unknown benchmark '" + parsed.positional.front() + "'");
  const comm::BenchOptions options = bench_options(spec, parsed);

  MpiSession mpi;
  on_every_rank([&] { topology::check_slurm_world(mpi.size()); });
  const config::Options deck = load_options(parsed);
  const topology::Topology topology = topology::Topology::create(plan_for_world(deck, mpi.size()).shape);
  MICS_LOG(info) << "topology:\n" << topology.describe();
  comm::MpiTransport mpi_transport(no_progress_limit(deck));
  if (options.device == "cpu")
    return comm::run_comm_benchmark(topology, options, mpi_transport, mpi_transport, nullptr, std::cout) == 0
               ? kExitOk
               : kExitFailure;

  // GPU buffers on the transport training would use: the same factory, the deck's backend.collectives.
  std::unique_ptr<backends::Backend> backend;
  comm::agree(topology.world().handle(), [&] {
    config::BackendOptions backend_options = deck.backend;
    backend_options.device = config::Device::cuda;
    try {
      backend = backends::make_backend(backend_options);
    } catch (const InputError& e) {  // e.g. no GPU on this node
      throw InputError(std::string("mics bench comm --device cuda: ") + e.what());
    }
  });
  const std::unique_ptr<comm::Transport> device_transport =
      backends::make_data_transport(*backend, topology, mpi_transport, deck.backend.collectives,
                                    [](const std::string& reason) { exit_now(reason); });
  MICS_CHECK(device_transport != nullptr, "the cuda backend without a device transport");
  const std::unique_ptr<comm::BenchMemory> memory = backends::bench_memory(*backend);
  const int wrong = comm::run_comm_benchmark(topology, options, mpi_transport, *device_transport, memory.get(), std::cout);
  return wrong == 0 ? kExitOk : kExitFailure;
}

}  // namespace mics::cli
