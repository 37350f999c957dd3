// The MPI implementation of the data channel (host memory: the CPU backend, and the staging buffers of the
// host-staged device collectives), and the host channel every backend uses for scalars.
// Owns the bf16 datatype and reduction operators: construct after MPI_Init, destroy before MPI_Finalize
// (a destructor after it skips the frees).
#pragma once
#include <mpi.h>

#include <chrono>
#include <functional>
#include <vector>

#include "mics/comm/collectives.hpp"

namespace mics::comm {

class MpiTransport final : public Transport {
 public:
  // no_progress_limit: a wait that sees no completion for this long gives up with a PeerError naming the
  // operation and the ranks of its group (the deck's run.timeout); 0 waits as long as it takes.
  explicit MpiTransport(std::chrono::milliseconds no_progress_limit = std::chrono::milliseconds(0));
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  std::string_view name() const override { return "mpi"; }
  Request all_gather(const void* send, void* recv, std::size_t count, DataType type, const Group& group) override;
  // Stage 1 gathers shards l, L+l, 2L+l, ... from the inter-node group straight into their slots; stage 2
  // (started when stage 1 is seen complete) gathers in place over the intra-node group.
  Request hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                  const Group& inter_node, const Group& intra_node) override;
  Request reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                         const Group& group) override;
  // Stage 1: J non-blocking reduce-scatters over the intra-node group, row j' of the input (shards j'*L ..
  // j'*L + L-1) into block j' of a host intermediate of J*count elements that the request owns; stage 2
  // (started when stage 1 is seen complete): one reduce-scatter of the intermediate over the inter-node
  // group. An average divides by p once, at the end.
  Request hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                      const Group& inter_node, const Group& intra_node) override;
  Request all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group) override;
  Request broadcast(void* buffer, std::size_t count, DataType type, int root, const Group& group) override;
  // Tests every operation in flight, oldest first.
  void progress() override;

  // The host channel (blocking): in-place all-reduce and barrier.
  void host_all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group);
  void barrier(const Group& group);

  std::chrono::milliseconds no_progress_limit() const { return no_progress_limit_; }
  MPI_Datatype mpi_type(DataType type) const;
  MPI_Op mpi_op(DataType type, ReduceOp op) const;  // average maps to the sum operator

 private:
  class Pending;
  class TwoStage;
  friend class Pending;
  friend class TwoStage;
  void track(PendingCollective* op) { in_flight_.push_back(op); }
  void untrack(PendingCollective* op);

  std::chrono::milliseconds no_progress_limit_;
  MPI_Datatype bf16_type_ = MPI_DATATYPE_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL;
  MPI_Op bf16_max_ = MPI_OP_NULL;
  std::vector<PendingCollective*> in_flight_;  // registered by each operation while it is unfinished
};

// MPI_Wait that gives up once `limit` passes without completion (0: no limit), with a PeerError naming
// `what` and the world ranks of `group`. For control messages outside the transport (the run loop's
// per-step agreement, the agreements of a checkpoint) that must not hang on a stopped peer either.
// `progress` (optional) is asked about once a second whether the awaited work advanced where this rank can
// see it (a checkpoint file growing): yes restarts the clock, so long legitimate work never times out.
void wait_or_give_up(MPI_Request& request, std::chrono::milliseconds limit, const char* what, const Group& group,
                     const std::function<bool()>& progress = {});

}  // namespace mics::comm
