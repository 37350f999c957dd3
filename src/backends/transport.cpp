// make_data_transport for builds without the CUDA backend: every backend is host memory, which the MPI
// transport moves itself. (With CUDA: src/backends/cuda/comm/data_transport.cpp.)
#if !defined(MICS_WITH_CUDA)
#include "mics/backends/transport.hpp"

#include <string>

#include "mics/util/error.hpp"

namespace mics::backends {

std::unique_ptr<comm::Transport> make_data_transport(Backend& backend, const topology::Topology&, comm::MpiTransport&,
                                                     config::DeviceCollectives choice, const LastResort&) {
  MICS_CHECK(backend.name() == "cpu", "a backend other than cpu in a build without CUDA");
  if (choice != config::DeviceCollectives::automatic) {  // the deck's: the same on every rank
    throw InputError("backend.collectives = " + std::string(choice == config::DeviceCollectives::nccl ? "nccl" : "staged") +
                         " needs backend.device = cuda, which this build does not have",
                     ErrorScope::all_ranks);
  }
  return nullptr;
}

}  // namespace mics::backends
#endif
