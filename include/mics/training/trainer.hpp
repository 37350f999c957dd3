// A training run from a validated configuration: model shape, backend, data, engine, the step loop with
// its schedule, validation, checkpoints, per-step metrics (JSON lines in the run directory) and the
// final summary. It sits above the engine and the checkpoints, which know nothing of each other's loop.
#pragma once
#include "mics/comm/collectives.hpp"
#include "mics/config/config.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/topology.hpp"

namespace mics::training {

// The model shape of the [model] section: the preset, with any key that is not `auto` overriding it.
// Throws mics::Error naming the key (heads must divide channels, seq_len <= the preset's max, ...).
model::GptShape model_shape(const config::Config& cfg);

// Runs the whole training; collective over the topology's world. Returns the process exit status.
int run_training(const config::Config& cfg, topology::Topology& topology, comm::Collectives& collectives);

}  // namespace mics::training
