// mics: MiCS training on Slurm clusters. This file only dispatches to the subcommands.
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "commands.hpp"
#include "mics/util/error.hpp"
#include "stop.hpp"

namespace {

constexpr const char* kUsage =
    "usage: mics <command> [options]\n"
    "\n"
    "commands:\n"
    "  train    train a model described by an input deck (run under mpirun or srun --mpi=pmix)\n"
    "  config   print the effective configuration of a deck, every key included\n"
    "  bench    benchmarks: `mics bench comm` measures the collectives of the MiCS groups\n"
    "  data     prepare token shards: `mics data prepare TEXT OUTDIR`, `mics data synth OUTDIR`\n"
    "  ckpt     checkpoints: `mics ckpt list RUN_DIR`, `mics ckpt inspect|verify PATH`\n"
    "  export   a checkpoint as safetensors or llm.c: `mics export PATH --format safetensors|llmc OUT`\n"
    "  sample   generate text from a checkpoint or llm.c model file: `mics sample PATH --prompt TEXT`\n"
    "  plan     predict memory and step time of every configuration at a scale: `mics plan --deck FILE --nodes N`\n"
    "\n"
    "Every command takes --help. Deck keys can be overridden as --section.key=value.\n"
    "Exit status: 0 success, 1 a rank failed (job aborted), 2 bad deck/option/shape/path,\n"
    "74 a checkpoint could not be written, "
    "75 checkpoint written after a signal (requeue the job).\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, stdout);
    return argc < 2 ? mics::kExitUsage : mics::kExitOk;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("mics %s\n", MICS_VERSION);
    return mics::kExitOk;
  }
  const std::string command = argv[1];
  const mics::cli::Args args(argv + 2, argv + argc);
  mics::cli::install_terminate_handler();
  try {
    if (command == "train") return mics::cli::train_command(args);
    if (command == "config") return mics::cli::config_command(args);
    if (command == "bench") return mics::cli::bench_command(args);
    if (command == "data") return mics::cli::data_command_entry(args);
    if (command == "ckpt") return mics::cli::ckpt_command(args);
    if (command == "export") return mics::cli::export_command(args);
    if (command == "sample") return mics::cli::sample_command(args);
    if (command == "plan") return mics::cli::plan_command(args);
  } catch (const mics::Error& e) {
    // Before MPI starts, an error is about the command line itself: a usage error of this one process.
    int mpi_started = 0;
    MPI_Initialized(&mpi_started);
    if (!mpi_started) {
      std::fprintf(stderr, "mics: error: %s\n", e.what());
      return e.exit_status();
    }
    mics::cli::stop(e);
  } catch (const std::exception& e) {
    // An error that escaped a subcommand may have been seen by this rank alone: abort the job.
    mics::cli::abort_job(e.what());
  }
  std::fprintf(stderr, "mics: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return mics::kExitUsage;
}
