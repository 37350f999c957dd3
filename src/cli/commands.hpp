// The mics command's subcommands. Each takes the arguments after its name and returns an exit status.
// main.cpp only dispatches; a subcommand wires the areas together and contains no algorithm of its own.
#pragma once
#include <string>
#include <vector>

namespace mics::cli {

using Args = std::vector<std::string>;

int train_command(const Args& args);       // mics train --deck FILE [--section.key=value ...]
int config_command(const Args& args);      // mics config [--deck FILE] [--section.key=value ...]
int bench_command(const Args& args);       // mics bench comm [-b -e -f -n -w -c] [--deck FILE ...]
int data_command_entry(const Args& args);  // mics data prepare|synth ...
int ckpt_command(const Args& args);        // mics ckpt list|inspect|verify PATH
int export_command(const Args& args);      // mics export PATH --format safetensors|llmc OUT
int sample_command(const Args& args);      // mics sample PATH [--prompt ...] [-n N] [--temperature T] ...
int plan_command(const Args& args);        // mics plan --deck FILE --nodes N [--hardware ...] (no MPI)

}  // namespace mics::cli
