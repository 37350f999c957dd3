// `mics data ...`: making token shards, MPI-free.
//   prepare TEXT OUTDIR [--val-fraction F] [--shard-tokens N]   byte-level tokens (vocab 256)
//   synth OUTDIR [--tokens N] [--vocab V] [--branching K] [--seed S] [--val-fraction F] [--shard-tokens N]
//                                                               a random Markov-chain corpus; prints
//                                                               "entropy floor: X nats/token"
// Both write OUTDIR/train_000000.bin ... and OUTDIR/val_000000.bin ...
#pragma once
#include <ostream>
#include <string>
#include <vector>

namespace mics::data {

// args excludes "mics data". Returns the exit status (0, or kExitUsage for an empty command line);
// bad arguments and I/O failures throw mics::Error naming the option or file.
int data_command(const std::vector<std::string>& args, std::ostream& out);

}  // namespace mics::data
