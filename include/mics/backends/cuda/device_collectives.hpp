// Which collectives move a backend's memory.
#pragma once
#include <memory>

#include "mics/backends/backend.hpp"
#include "mics/comm/collectives.hpp"
#include "mics/topology/topology.hpp"

namespace mics::backends::cuda {

// nullptr for a host-memory backend (use `host` as is). For the CUDA backend: NcclCollectives when every
// rank of every node has a GPU of its own, HostStagedCollectives when ranks share GPUs (the same choice on
// every rank). The environment variable MICS_CUDA_COLLECTIVES = auto | nccl | staged overrides the choice.
// Collective over topology.world(); `host` must outlive the result.
std::unique_ptr<comm::Collectives> make_device_collectives(Backend& backend, topology::Topology& topology,
                                                           comm::Collectives& host);

}  // namespace mics::backends::cuda
