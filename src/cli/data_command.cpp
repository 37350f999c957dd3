// mics data: token shards for training (no MPI: run it once, before the job).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "command_line.hpp"
#include "commands.hpp"
#include "mics/data/commands.hpp"
#include "mics/util/error.hpp"

namespace mics::cli {

namespace {

constexpr const char* kDataDescription =
    "Writes OUTDIR/train_000000.bin ... and OUTDIR/val_000000.bin ... (llm.c token shards).";

void add_shard_options(CommandSpec& spec) {
  spec.options()
      ("val-fraction", po::value<double>()->value_name("F")->default_value(0.1),
       "share of the tokens (the tail) kept for validation, 0 <= F < 1")
      ("shard-tokens", po::value<std::size_t>()->value_name("N")->default_value(100000000), "tokens per shard file")
      ("force", po::bool_switch(), "replace token shards already in OUTDIR");
}

CommandSpec prepare_spec() {
  CommandSpec spec("mics data prepare", "mics data prepare TEXT OUTDIR [options]",
                   std::string("Tokenizes a text file at byte level (vocab 256: token = byte). ") + kDataDescription);
  spec.positional("TEXT", "the text file").positional("OUTDIR", "where the shards go");
  add_shard_options(spec);
  return spec;
}

CommandSpec synth_spec() {
  CommandSpec spec("mics data synth", "mics data synth OUTDIR [options]",
                   std::string("Samples a corpus from a seeded random order-1 Markov chain and prints its entropy rate,\n"
                               "the loss a perfect model reaches. ") +
                       kDataDescription);
  spec.positional("OUTDIR", "where the shards go");
  add_shard_options(spec);
  spec.options()
      ("tokens", po::value<std::size_t>()->value_name("N")->default_value(1000000),
       "tokens to sample, train and val together")
      ("vocab", po::value<std::uint32_t>()->value_name("V")->default_value(256), "states of the chain = vocabulary size")
      ("branching", po::value<std::uint32_t>()->value_name("K")->default_value(4), "successors per state")
      ("seed", po::value<std::uint64_t>()->value_name("S")->default_value(1234), "seed of the chain and the sample");
  return spec;
}

template <class Number>
Number in_range(const CommandSpec& spec, const ParsedCommand& parsed, const std::string& name, Number min, Number max) {
  const Number value = parsed.get<Number>(name);
  if (value < min || value > max) {
    std::ostringstream message;
    message << "option --" << name << ": " << value << " is outside [" << min << ", " << max << "]";
    spec.fail(message.str());
  }
  return value;
}

data::ShardOptions shard_options(const CommandSpec& spec, const ParsedCommand& parsed) {
  data::ShardOptions shards;
  shards.val_fraction = in_range(spec, parsed, "val-fraction", 0.0, 0.999999);
  shards.shard_tokens = in_range<std::size_t>(spec, parsed, "shard-tokens", 1, INT32_MAX);
  shards.force = parsed.get<bool>("force");
  return shards;
}

// Both tables: `mics data --help`.
std::string data_usage() { return prepare_spec().usage() + "\n" + synth_spec().usage(); }

}  // namespace

int data_command_entry(const Args& args) {
  if (args.empty()) throw InputError("mics data: expected a command, prepare or synth\n\n" + data_usage());
  const std::string& command = args.front();
  if (command == "--help" || command == "-h") {
    std::fputs(data_usage().c_str(), stdout);
    return kExitOk;
  }
  const Args rest(args.begin() + 1, args.end());
  if (command == "prepare") {
    const CommandSpec spec = prepare_spec();
    const ParsedCommand parsed = spec.parse(rest);
    if (parsed.help) {
      std::fputs(spec.usage().c_str(), stdout);
      return kExitOk;
    }
    data::prepare_text(parsed.positional[0], parsed.positional[1], shard_options(spec, parsed), std::cout);
    return kExitOk;
  }
  if (command == "synth") {
    const CommandSpec spec = synth_spec();
    const ParsedCommand parsed = spec.parse(rest);
    if (parsed.help) {
      std::fputs(spec.usage().c_str(), stdout);
      return kExitOk;
    }
    data::SynthOptions synth;
    synth.tokens = in_range<std::size_t>(spec, parsed, "tokens", 2, std::size_t{1} << 36);
    synth.vocab = in_range<std::uint32_t>(spec, parsed, "vocab", 1, 1u << 24);
    synth.branching = in_range<std::uint32_t>(spec, parsed, "branching", 1, synth.vocab);
    synth.seed = parsed.get<std::uint64_t>("seed");
    data::synth_markov(parsed.positional[0], synth, shard_options(spec, parsed), std::cout);
    return kExitOk;
  }
  throw InputError("mics data: unknown command '" + command + "' (expected prepare or synth)\n\n" + data_usage());
}

}  // namespace mics::cli
