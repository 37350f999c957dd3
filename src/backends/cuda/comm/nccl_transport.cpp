// NcclTransport: the operations on a communication stream ordered against the compute stream with events.
#include "mics/backends/cuda/nccl_transport.hpp"

#include <algorithm>
#include <exception>
#include <string>

#include "mics/backends/cuda/check.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

using Clock = std::chrono::steady_clock;
using comm::DataType;
using comm::Group;
using comm::ReduceOp;
using comm::Request;

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::f32: return ncclFloat32;
    case DataType::bf16: return ncclBfloat16;
    case DataType::i32: return ncclInt32;
    case DataType::i64: return ncclInt64;
    case DataType::f64: return ncclFloat64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::average: return ncclAvg;
    case ReduceOp::max: return ncclMax;
  }
  return ncclSum;
}

namespace {

int set_device(int device) {
  CUDA_CHECK(cudaSetDevice(device));
  return device;
}

std::string label(std::string_view op, const Group& group) {
  return std::string(op) + " on the " + std::string(topology::to_string(group.kind())) + " group";
}

// NCCL reads an all-gather's input inside its output only in place: at this rank's block.
void check_in_place(const void* send, const void* recv, std::size_t block_bytes, std::size_t blocks,
                    std::size_t index, const char* what) {
  const auto* s = static_cast<const char*>(send);
  const auto* r = static_cast<const char*>(recv);
  const bool overlaps = s < r + block_bytes * blocks && r < s + block_bytes;
  if (overlaps && s != r + block_bytes * index) {
    throw InternalError(std::string(what) + ": the input overlaps the output but is not this rank's block of it");
  }
}

}  // namespace

// --- completion handle -------------------------------------------------------------------------------

class NcclTransport::Pending final : public comm::PendingCollective {
 public:
  Pending(NcclTransport& owner, std::shared_ptr<Event> done) : owner_(owner), done_(std::move(done)) {}
  // Complete from the compute stream's point of view: its next work runs after the operation. No host wait.
  // Throws only a recorded failure (the operation's result is garbage) or a CUDA error.
  void wait() override {
    if (ordered_) return;
    owner_.context_.check_failed();
    CUDA_CHECK(cudaStreamWaitEvent(owner_.compute_stream_, done_->get(), 0));
    ordered_ = true;
  }
  // An aborted operation also completes: the failure is raised instead of its result.
  bool test() override {
    owner_.context_.check_failed();
    if (!done_->query()) return false;
    wait();
    return true;
  }
  // Destroyed unordered only after wait() threw: the compute stream still must not reuse the buffers
  // before the operation is over.
  ~Pending() override {
    if (!ordered_) CUDA_WARN(cudaStreamWaitEvent(owner_.compute_stream_, done_->get(), 0));
  }

 private:
  NcclTransport& owner_;
  std::shared_ptr<Event> done_;
  bool ordered_ = false;
};

// --- setup and teardown --------------------------------------------------------------------------------

NcclTransport::NcclTransport(const topology::Topology& topology, int device, cudaStream_t compute_stream,
                             const NcclOptions& options)
    : device_(set_device(device)),
      compute_stream_(compute_stream),
      context_(topology.placement().world_rank, options) {
  // The same order on every rank, one communicator at a time: no two inits can wait on each other. Not the
  // world: the engine moves only host scalars over it, and a world-wide NCCL communicator costs init time
  // and buffers that grow with the cluster.
  for (const auto& [reduce, gather] : {std::pair{&topology.intra_node_reduce(), &topology.intra_node()},
                                       std::pair{&topology.inter_node_reduce(), &topology.inter_node()}}) {
    if (reduce->valid()) aliases_.emplace_back(reduce->handle(), gather->handle());
  }
  try {
    for (const Group* group :
         {&topology.partition(), &topology.replication(), &topology.intra_node(), &topology.inter_node()}) {
      if (group->valid()) communicator(*group);
    }
    watchdog_.emplace(context_, device_);
  } catch (...) {
    // No destructor runs after a constructor throws, and the peers will not finalize with this rank: abort
    // what was made, and wait for the aborts before the streams go.
    {
      auto held = context_.lock();
      context_.abort_all_locked();
    }
    communicators_.clear();
    context_.await_aborts();
    throw;
  }
}

NcclTransport::~NcclTransport() {
  watchdog_.reset();  // stopped: from here on only this thread calls NCCL
  if (context_.failed() && !context_.raised() && std::uncaught_exceptions() == 0) {
    context_.await_aborts();
    context_.last_resort(context_.failure() + " (after the last operation: the results are suspect)");
  }
  for (auto& c : communicators_) c.reset();  // in creation order, explicitly
  context_.await_aborts();
}

ncclComm_t NcclTransport::communicator(const Group& group) {
  MPI_Comm handle = group.handle();
  for (const auto& [from, to] : aliases_)
    if (handle == from) handle = to;
  for (const auto& c : communicators_)
    if (c->group_handle() == handle) return c->get();
  communicators_.push_back(std::make_unique<NcclCommunicator>(context_, group));
  return communicators_.back()->get();
}

// --- issuing -----------------------------------------------------------------------------------------------

void NcclTransport::wait_enqueued(ncclComm_t comm, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    ncclResult_t state = ncclSuccess;
    std::string detail;
    {
      auto held = context_.lock();
      if (context_.aborts_started_locked()) {
        detail = "the NCCL communicators were aborted";
      } else {
        state = nccl_state(comm);
        if (is_nccl_error(state)) detail = describe_nccl_error(state, comm);
      }
    }
    context_.check_failed();
    if (!detail.empty()) context_.fail("NCCL error while enqueueing " + what + ": " + detail);
    if (state == ncclSuccess) return;
    if (Clock::now() - start > context_.options().timeout) {
      context_.fail("NCCL could not enqueue " + what + " within " + milliseconds_text(context_.options().timeout));
    }
    std::this_thread::yield();
  }
}

Request NcclTransport::launch(const std::string& what, const std::vector<Phase>& phases) {
  context_.check_failed();
  // The data is ready once the compute stream's work so far is done.
  ready_.record(compute_stream_);
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_.get(), ready_.get(), 0));
  std::vector<ncclComm_t> comms;
  for (const Phase& phase : phases) {
    std::string error;
    {
      auto held = context_.lock();
      if (context_.aborts_started_locked()) {
        error = "the NCCL communicators were aborted";
      } else {
        const ncclResult_t rc = phase.enqueue(comm_stream_.get());
        if (is_nccl_error(rc)) error = describe_nccl_error(rc, phase.comm);
      }
    }
    context_.check_failed();
    if (!error.empty()) context_.fail("NCCL error while issuing " + what + ": " + error);
    // A non-blocking communicator may still be enqueueing: the next phase and the event come after.
    wait_enqueued(phase.comm, what);
    comms.push_back(phase.comm);
  }
  auto done = std::make_shared<Event>();
  done->record(comm_stream_.get());
  watchdog_->watch(done, what, comms);
  return Request(std::make_unique<Pending>(*this, std::move(done)));
}

// --- operations ----------------------------------------------------------------------------------------------

Request NcclTransport::all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                  const Group& group) {
  check_in_place(send, recv, count * comm::size_of(type), static_cast<std::size_t>(group.size()),
                 static_cast<std::size_t>(group.rank()), "all-gather");
  const ncclComm_t nccl = communicator(group);
  return launch(label("all-gather", group), {{nccl, [=](cudaStream_t s) {
                                                return ncclAllGather(send, recv, count, nccl_type(type), nccl, s);
                                              }}});
}

// Shard q = j*L + l of the output sits at q*c. Stage 1 (inter-node group, rank j of J): this rank's shard
// goes to slot j*L + l, and every peer j' sends its shard to slot j'*L + l. Stage 2 (intra-node group, rank
// l of L): for each j', an in-place all-gather of the L slots j'*L .. j'*L + L-1 completes block j' (NCCL's
// in-place form: the input is the output at rank l's block). Stage 2 is issued once stage 1 is enqueued,
// so it follows it on the stream.
Request NcclTransport::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                               const Group& inter_node, const Group& intra_node) {
  const int J = inter_node.size();
  const int L = intra_node.size();
  const int j = inter_node.rank();
  const int l = intra_node.rank();
  const std::size_t elem = comm::size_of(type);
  const ncclDataType_t nt = nccl_type(type);
  char* out = static_cast<char*>(recv);
  const auto slot = [=](int jj, int ll) { return out + (static_cast<std::size_t>(jj) * L + ll) * count * elem; };
  check_in_place(send, recv, count * elem, static_cast<std::size_t>(J) * L, static_cast<std::size_t>(j) * L + l,
                 "hierarchical all-gather");
  const ncclComm_t inter = communicator(inter_node);
  const ncclComm_t intra = communicator(intra_node);
  const Phase inter_stage{inter, [=](cudaStream_t s) {
                            if (slot(j, l) != send && count > 0) {
                              if (cudaMemcpyAsync(slot(j, l), send, count * elem, cudaMemcpyDeviceToDevice, s) !=
                                  cudaSuccess)
                                return ncclUnhandledCudaError;
                            }
                            if (J == 1) return ncclSuccess;
                            ncclResult_t rc = ncclGroupStart();
                            for (int peer = 0; peer < J && !is_nccl_error(rc); ++peer) {
                              if (peer == j) continue;
                              rc = ncclSend(send, count, nt, peer, inter, s);
                              if (!is_nccl_error(rc)) rc = ncclRecv(slot(peer, l), count, nt, peer, inter, s);
                            }
                            const ncclResult_t end = ncclGroupEnd();
                            return is_nccl_error(rc) ? rc : end;
                          }};
  const Phase intra_stage{intra, [=](cudaStream_t s) {
                            ncclResult_t rc = ncclGroupStart();
                            for (int block = 0; block < J && !is_nccl_error(rc); ++block) {
                              rc = ncclAllGather(slot(block, l), slot(block, 0), count, nt, intra, s);
                            }
                            const ncclResult_t end = ncclGroupEnd();
                            return is_nccl_error(rc) ? rc : end;
                          }};
  return launch("hierarchical all-gather", {inter_stage, intra_stage});
}

Request NcclTransport::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                      const Group& group) {
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const ncclComm_t nccl = communicator(group);
  return launch(label("reduce-scatter", group), {{nccl, [=](cudaStream_t s) {
                                                    return ncclReduceScatter(send, recv, count, nccl_type(type),
                                                                             nccl_op(op), nccl, s);
                                                  }}});
}

// Row j' of the input (shards j'*L .. j'*L + L-1) is contiguous. Stage 1 (intra-node group, rank l of L):
// reduce-scatter each row, rank l keeping the node's sum of shard j'*L + l at j'*c of the intermediate.
// Stage 2 (inter-node group, rank j of J): reduce-scatter the intermediate, rank j keeping shard j*L + l.
// The intermediate (J*c elements) is allocated and freed in stream order on the communication stream, so
// operations queued one after another never share it while it is in use. An average divides by L in the
// first stage and by J in the second (ncclAvg over each group): the mean over p, with one more rounding.
Request NcclTransport::hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                                   ReduceOp op, const Group& inter_node, const Group& intra_node) {
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const int J = inter_node.size();
  const int L = intra_node.size();
  const std::size_t elem = comm::size_of(type);
  const ncclDataType_t nt = nccl_type(type);
  const ncclRedOp_t nop = nccl_op(op);
  const char* in = static_cast<const char*>(send);
  const ncclComm_t inter = communicator(inter_node);
  const ncclComm_t intra = communicator(intra_node);
  auto intermediate = std::make_shared<void*>(nullptr);
  const Phase intra_stage{intra, [=](cudaStream_t s) {
                            if (cudaMallocAsync(intermediate.get(), std::max<std::size_t>(1, J * count * elem), s) !=
                                cudaSuccess)
                              return ncclUnhandledCudaError;
                            char* mid = static_cast<char*>(*intermediate);
                            ncclResult_t rc = ncclGroupStart();
                            for (int row = 0; row < J && !is_nccl_error(rc); ++row) {
                              rc = ncclReduceScatter(in + static_cast<std::size_t>(row) * L * count * elem,
                                                     mid + static_cast<std::size_t>(row) * count * elem, count, nt,
                                                     nop, intra, s);
                            }
                            const ncclResult_t end = ncclGroupEnd();
                            return is_nccl_error(rc) ? rc : end;
                          }};
  const Phase inter_stage{inter, [=](cudaStream_t s) {
                            const ncclResult_t rc = ncclReduceScatter(*intermediate, recv, count, nt, nop, inter, s);
                            if (cudaFreeAsync(*intermediate, s) != cudaSuccess) return ncclUnhandledCudaError;
                            return rc;
                          }};
  return launch("hierarchical reduce-scatter", {intra_stage, inter_stage});
}

Request NcclTransport::all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group) {
  const ncclComm_t nccl = communicator(group);
  return launch(label("all-reduce", group), {{nccl, [=](cudaStream_t s) {
                                                return ncclAllReduce(buffer, buffer, count, nccl_type(type),
                                                                     nccl_op(op), nccl, s);
                                              }}});
}

Request NcclTransport::broadcast(void* buffer, std::size_t count, DataType type, int root, const Group& group) {
  const ncclComm_t nccl = communicator(group);
  return launch(label("broadcast", group), {{nccl, [=](cudaStream_t s) {
                                               return ncclBroadcast(buffer, buffer, count, nccl_type(type), root,
                                                                    nccl, s);
                                             }}});
}

}  // namespace mics::backends::cuda
