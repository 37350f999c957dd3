// A training run: backend, data, model, engine, the step loop with its learning-rate schedule,
// validation, checkpoints, per-step metrics (JSON lines in the run directory) and the final summary. It
// sits above the engine and the checkpoints, which know nothing of each other's loop.
#pragma once
#include "mics/backends/transport.hpp"
#include "mics/comm/mpi_transport.hpp"
#include "mics/config/options.hpp"
#include "mics/model/gpt.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"

namespace mics::training {

// What a run is given, each piece resolved and validated once by the command.
struct RunSetup {
  const config::Options& options;
  const topology::ParallelPlan& plan;
  const model::ModelSpec& model;
  const topology::Topology& topology;
  comm::MpiTransport& mpi;  // the host channel, and the data channel of host-memory backends
  backends::LastResort on_unrecoverable;  // how a device transport's watchdog ends the process
};

// Runs the whole training; collective over the topology's world. Returns the process exit status
// (kExitOk, or kExitRequeue after a signal's checkpoint); failures are thrown (util/error.hpp).
int run_training(const RunSetup& setup);

}  // namespace mics::training
