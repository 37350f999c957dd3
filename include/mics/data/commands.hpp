// `mics data ...`: making token shards, MPI-free (the command line is parsed in src/cli/data_command.cpp).
//   prepare TEXT OUTDIR   byte-level tokens (vocab 256)
//   synth OUTDIR          a random Markov-chain corpus; prints "entropy floor: X nats/token"
// Both write OUTDIR/train_000000.bin ... and OUTDIR/val_000000.bin ...
#pragma once
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace mics::data {

struct ShardOptions {
  double val_fraction = 0.1;             // the tail kept for validation, 0 <= F < 1
  std::size_t shard_tokens = 100000000;  // tokens per shard file
  bool force = false;                    // replace token shards already in OUTDIR
};

struct SynthOptions {
  std::size_t tokens = 1000000;  // train and val together
  std::uint32_t vocab = 256;     // states of the chain
  std::uint32_t branching = 4;   // successors per state, <= vocab
  std::uint64_t seed = 1234;
};

// Bad values, unreadable files and I/O failures throw mics::InputError naming the file or value; what was
// written is printed to `out`.
void prepare_text(const std::string& text_path, const std::string& out_dir, const ShardOptions& shards,
                  std::ostream& out);
void synth_markov(const std::string& out_dir, const SynthOptions& synth, const ShardOptions& shards,
                  std::ostream& out);

}  // namespace mics::data
