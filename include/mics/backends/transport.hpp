// Which transport moves a backend's memory (comm::Transport, the data channel of comm::Collectives). The one
// place the trainer asks, with no knowledge of which backends this build has.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "mics/backends/backend.hpp"
#include "mics/comm/bench.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/config/options.hpp"

namespace mics::comm {
class MpiTransport;
}
namespace mics::topology {
class Topology;
}

namespace mics::backends {

// Called when a device transport finds a failure that the main thread can no longer raise as an error
// (it is blocked in an MPI call on a peer that never comes, or the error came after its last call): it
// reports `reason` and ends the process. It may run on a thread other than the main one, so it must make
// no MPI call (MPI runs FUNNELED). It must not return; if it does, std::terminate follows.
using LastResort = std::function<void(const std::string& reason)>;

// The transport that moves this backend's memory: nullptr for host memory (the caller then uses the MPI
// transport itself); for the CUDA backend NCCL, or MPI through pinned host buffers when ranks share a GPU
// or the deck says so (backend.collectives). Collective over topology.world(); every rank gets the same
// answer, and a bad choice (nccl on shared GPUs, nccl or staged for a host-memory backend) throws the same
// InputError on every rank (scope all_ranks). `mpi` must outlive the result. `on_unrecoverable`: the last
// resort of NCCL's watchdog (empty: print the reason and std::terminate).
std::unique_ptr<comm::Transport> make_data_transport(Backend& backend, const topology::Topology& topology,
                                                     comm::MpiTransport& mpi, config::DeviceCollectives choice,
                                                     const LastResort& on_unrecoverable = {});

// The backend's memory as the buffers of `mics bench comm --device` (comm::BenchMemory); `backend` must
// outlive the result.
std::unique_ptr<comm::BenchMemory> bench_memory(Backend& backend);

}  // namespace mics::backends
