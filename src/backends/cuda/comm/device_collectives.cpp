#include "mics/backends/cuda/device_collectives.hpp"

#include <mpi.h>

#include <cstdlib>
#include <string>

#include "mics/backends/cuda/cuda_backend.hpp"
#include "mics/backends/cuda/device.hpp"
#include "mics/backends/cuda/host_staged_collectives.hpp"
#include "mics/backends/cuda/nccl_collectives.hpp"
#include "mics/log/log.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

std::unique_ptr<comm::Collectives> make_device_collectives(Backend& backend, topology::Topology& topology,
                                                           comm::Collectives& host) {
  auto* gpu = dynamic_cast<CudaBackend*>(&backend);
  if (gpu == nullptr) return nullptr;

  std::string mode = "auto";
  if (const char* value = std::getenv("MICS_CUDA_COLLECTIVES"); value != nullptr && *value != '\0') mode = value;
  if (mode != "auto" && mode != "nccl" && mode != "staged") {
    throw Error("MICS_CUDA_COLLECTIVES = " + mode + " is not one of auto, nccl, staged");
  }
  // Ranks of this machine against its GPUs; any machine with more ranks than GPUs stages every rank
  // (the same answer everywhere, so all ranks build the same kind).
  MPI_Comm local = MPI_COMM_NULL;
  MICS_MPI_CHECK(MPI_Comm_split_type(topology.world().handle(), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int local_ranks = 1;
  MICS_MPI_CHECK(MPI_Comm_size(local, &local_ranks));
  MICS_MPI_CHECK(MPI_Comm_free(&local));
  int shares = local_ranks > device_count() ? 1 : 0;
  MICS_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &shares, 1, MPI_INT, MPI_MAX, topology.world().handle()));

  const bool staged = mode == "staged" || (mode == "auto" && shares != 0);
  if (staged) {
    MICS_LOG(info) << "collectives: host-staged MPI on device memory ("
                   << (mode == "staged" ? "MICS_CUDA_COLLECTIVES = staged" : "ranks share GPUs") << ")";
    return std::make_unique<HostStagedCollectives>(gpu->stream(), host);
  }
  int version = 0;
  NCCL_CHECK(ncclGetVersion(&version));
  MICS_LOG(info) << "collectives: NCCL " << version / 10000 << "." << (version / 100) % 100 << "." << version % 100
                 << " on " << describe_device(gpu->device());
  return std::make_unique<NcclCollectives>(topology, gpu->device(), gpu->stream(), host);
}

}  // namespace mics::backends::cuda
