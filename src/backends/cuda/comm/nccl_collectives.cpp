// NcclCollectives: NCCL communicators from the MPI groups, a communication stream ordered against the
// compute stream with events, and a watchdog that turns a dead peer into an abort instead of a hang.
#include "mics/backends/cuda/nccl_collectives.hpp"

#include <mpi.h>

#include <string>

#include "mics/backends/cuda/check.hpp"
#include "mics/util/error.hpp"

namespace mics::backends::cuda {

using Clock = std::chrono::steady_clock;
using comm::DataType;
using comm::ReduceOp;
using comm::Request;

void nccl_failed(const char* file, int line, const char* call, ncclResult_t result) {
  throw Error(std::string("NCCL error at ") + file + ":" + std::to_string(line) + ": " + call + ": " +
              ncclGetErrorString(result));
}

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

bool is_device_pointer(const void* ptr) {
  if (ptr == nullptr) return false;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // not a pointer CUDA knows: host memory
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

bool device_buffers(const void* send, const void* recv) {
  const bool send_device = is_device_pointer(send);
  const bool recv_device = is_device_pointer(recv);
  if (send_device != recv_device) {
    throw Error("collective with one buffer in device memory and the other in host memory");
  }
  return recv_device;
}

namespace {

void require_floating_for_average(DataType type, ReduceOp op) {
  if (op == ReduceOp::average && (type == DataType::i32 || type == DataType::i64)) {
    throw Error("average reduction needs a floating element type, got " + std::string(comm::to_string(type)));
  }
}

void record_broadcast(comm::Communicator& comm, std::size_t count, DataType type, int root) {
  const std::uint64_t bytes = comm.size() > 1 ? count * comm::size_of(type) : 0;
  if (comm.rank() == root) {
    comm.record(bytes, 0);
  } else {
    comm.record(0, bytes);
  }
}

int set_device(int device) {
  CUDA_CHECK(cudaSetDevice(device));
  return device;
}

std::string label(std::string_view op, const comm::Communicator& comm) {
  return std::string(op) + " on the " + std::string(comm::to_string(comm.kind())) + " group";
}

}  // namespace

// An enqueueing call on a non-blocking communicator: success or "still being enqueued" are both fine.
#define NCCL_ENQUEUE(call)                                                                     \
  do {                                                                                         \
    const ncclResult_t mics_nccl_rc_ = (call);                                                 \
    if (mics_nccl_rc_ != ncclSuccess && mics_nccl_rc_ != ncclInProgress)                       \
      fail(std::string("NCCL error at ") + __FILE__ + ":" + std::to_string(__LINE__) + ": " + #call + ": " + \
           ncclGetErrorString(mics_nccl_rc_));                                                 \
  } while (0)

// --- completion handle -------------------------------------------------------------------------------

class NcclCollectives::Pending final : public comm::PendingCollective {
 public:
  Pending(NcclCollectives& owner, std::shared_ptr<Event> done) : owner_(owner), done_(std::move(done)) {}
  // Complete from the compute stream's point of view: its next work runs after the collective.
  void wait() override {
    if (ordered_) return;
    CUDA_CHECK(cudaStreamWaitEvent(owner_.compute_stream_, done_->get(), 0));
    ordered_ = true;
  }
  bool test() override {
    if (!done_->query()) return false;
    wait();
    return true;
  }
  ~Pending() override {
    if (!ordered_) CUDA_WARN(cudaStreamWaitEvent(owner_.compute_stream_, done_->get(), 0));
  }

 private:
  NcclCollectives& owner_;
  std::shared_ptr<Event> done_;
  bool ordered_ = false;
};

// --- setup and teardown --------------------------------------------------------------------------------

NcclCollectives::NcclCollectives(topology::Topology& topology, int device, cudaStream_t compute_stream,
                                 comm::Collectives& host, const NcclOptions& options)
    : device_(set_device(device)),
      compute_stream_(compute_stream),
      host_(host),
      options_(options) {
  // The same order on every rank, one communicator at a time: no two inits can wait on each other.
  for (comm::Communicator* c : {&topology.world(), &topology.partition(), &topology.replication(),
                                &topology.intra_node(), &topology.inter_node()}) {
    if (c->valid()) nccl_comm(*c);
  }
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

NcclCollectives::~NcclCollectives() {
  stop_ = true;
  if (watchdog_.joinable()) watchdog_.join();
  if (aborted_) return;
  CUDA_WARN(cudaStreamSynchronize(comm_stream_.get()));
  for (auto& [mpi, nccl] : comms_) {
    // Finalize flushes outstanding work; on a non-blocking communicator it is polled to completion.
    ncclResult_t state = ncclCommFinalize(nccl);
    const Clock::time_point start = Clock::now();
    while (state == ncclInProgress && Clock::now() - start < options_.timeout) {
      std::this_thread::yield();
      ncclCommGetAsyncError(nccl, &state);
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(nccl);
    } else {
      ncclCommAbort(nccl);
    }
  }
}

ncclComm_t NcclCollectives::nccl_comm(comm::Communicator& comm) {
  for (const auto& [mpi, nccl] : comms_)
    if (mpi == comm.handle()) return nccl;
  const ncclComm_t nccl = create(comm);
  std::lock_guard<std::mutex> lock(mutex_);
  comms_.emplace_back(comm.handle(), nccl);
  return nccl;
}

ncclComm_t NcclCollectives::create(const comm::Communicator& comm) {
  ncclUniqueId id{};
  if (comm.rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MICS_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm.handle()));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t nccl = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&nccl, comm.size(), id, comm.rank(), &config);
  const std::string what = "NCCL init of the " + std::string(comm::to_string(comm.kind())) + " communicator";
  if (rc != ncclSuccess && rc != ncclInProgress) {
    fatal_one(what + " failed: " + ncclGetErrorString(rc));
  }
  // Not yet in comms_: poll it here, aborting it alone on failure.
  const Clock::time_point start = Clock::now();
  ncclResult_t state = ncclInProgress;
  while (true) {
    if (ncclCommGetAsyncError(nccl, &state) != ncclSuccess) state = ncclInternalError;
    if (state != ncclInProgress) break;
    if (Clock::now() - start > options_.timeout) {
      ncclCommAbort(nccl);
      fail(what + " did not finish within " + std::to_string(options_.timeout.count()) +
           " ms (a peer is missing, or the network is blocked)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (state != ncclSuccess) {
    ncclCommAbort(nccl);
    fail(what + " failed: " + ncclGetErrorString(state));
  }
  return nccl;
}

// --- failure handling ------------------------------------------------------------------------------------

void NcclCollectives::fail(const std::string& message) {
  if (!aborted_.exchange(true)) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [mpi, nccl] : comms_) ncclCommAbort(nccl);
  }
  // MPI_Abort is the one MPI call honoured from any thread: the watchdog may be the caller.
  fatal_one(message);
}

void NcclCollectives::check_async(ncclComm_t comm, const std::string& what) {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm, &state);
  if (rc != ncclSuccess) state = rc;
  if (state != ncclSuccess && state != ncclInProgress) {
    fail("NCCL error during " + what + ": " + ncclGetErrorString(state) + " (" + ncclGetLastError(comm) + ")");
  }
}

void NcclCollectives::wait_ready(ncclComm_t comm, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) state = ncclInternalError;
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) fail("NCCL error while enqueueing " + what + ": " + ncclGetErrorString(state));
    if (Clock::now() - start > options_.timeout) fail("NCCL could not enqueue " + what + " within the timeout");
    std::this_thread::yield();
  }
}

void NcclCollectives::watchdog_loop() {
  if (cudaSetDevice(device_) != cudaSuccess) return;
  while (!stop_) {
    std::this_thread::sleep_for(options_.watchdog_period);
    std::string failure;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const Clock::time_point now = Clock::now();
      for (std::size_t i = 0; i < in_flight_.size() && failure.empty();) {
        InFlight& op = in_flight_[i];
        const cudaError_t rc = cudaEventQuery(op.done->get());
        if (rc == cudaSuccess) {
          in_flight_[i] = std::move(in_flight_.back());
          in_flight_.pop_back();
          continue;
        }
        if (rc != cudaErrorNotReady) {
          failure = op.what + ": CUDA error " + cudaGetErrorString(rc);
          break;
        }
        for (ncclComm_t c : op.comms) {
          ncclResult_t state = ncclSuccess;
          if (ncclCommGetAsyncError(c, &state) != ncclSuccess) state = ncclInternalError;
          if (state != ncclSuccess && state != ncclInProgress) {
            failure = "NCCL error during " + op.what + ": " + ncclGetErrorString(state);
            break;
          }
        }
        if (failure.empty() && now - op.start > options_.timeout) {
          failure = op.what + " did not finish within " + std::to_string(options_.timeout.count()) +
                    " ms: a peer is dead or stuck";
        }
        ++i;
      }
    }
    if (!failure.empty()) fail(failure);
  }
}

// --- issuing -----------------------------------------------------------------------------------------------

template <class Enqueue>
Request NcclCollectives::launch(std::string what, std::vector<ncclComm_t> comms, bool blocking, Enqueue&& enqueue) {
  if (aborted_) fail(what + " issued after the communicators were aborted");
  // The data is ready once the compute stream's work so far is done.
  ready_.record(compute_stream_);
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_.get(), ready_.get(), 0));
  enqueue(comm_stream_.get());
  for (ncclComm_t c : comms) wait_ready(c, what);
  auto done = std::make_shared<Event>();
  done->record(comm_stream_.get());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.push_back(InFlight{done, Clock::now(), what, comms});
  }
  auto pending = std::make_unique<Pending>(*this, done);
  if (!blocking) return Request(std::move(pending));
  pending->wait();
  // Host wait, polling for errors (the watchdog would also catch them, a period later).
  const Clock::time_point start = Clock::now();
  while (!done->query()) {
    for (ncclComm_t c : comms) check_async(c, what);
    if (Clock::now() - start > options_.timeout) fail(what + " did not finish within the timeout");
    std::this_thread::yield();
  }
  return Request();
}

// --- all-gather ----------------------------------------------------------------------------------------------

void NcclCollectives::all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                 comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.all_gather(send, recv, count, type, comm);
  const ncclComm_t nccl = nccl_comm(comm);
  launch(label("all-gather", comm), {nccl}, true, [&](cudaStream_t s) {
    NCCL_ENQUEUE(ncclAllGather(send, recv, count, nccl_type(type), nccl, s));
  });
  const std::uint64_t bytes = comm::ring_all_gather_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
}

Request NcclCollectives::iall_gather(const void* send, void* recv, std::size_t count, DataType type,
                                     comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.iall_gather(send, recv, count, type, comm);
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("all-gather", comm), {nccl}, false, [&](cudaStream_t s) {
    NCCL_ENQUEUE(ncclAllGather(send, recv, count, nccl_type(type), nccl, s));
  });
  const std::uint64_t bytes = comm::ring_all_gather_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
  return request;
}

void NcclCollectives::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                              comm::Communicator& inter_node, comm::Communicator& intra_node) {
  if (!device_buffers(send, recv)) {
    return host_.hierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node).wait();
  CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
}

// Shard q = j*L + l of the output sits at q*c. Stage 1 (inter-node group, rank j of J): this rank's shard
// goes to slot j*L + l, and every peer j' sends its shard to slot j'*L + l. Stage 2 (intra-node group, rank
// l of L): for each j', an in-place all-gather of the L slots j'*L .. j'*L + L-1 completes block j'.
Request NcclCollectives::ihierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                                  comm::Communicator& inter_node, comm::Communicator& intra_node) {
  if (!device_buffers(send, recv)) {
    return host_.ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  const int J = inter_node.size();
  const int L = intra_node.size();
  const int j = inter_node.rank();
  const int l = intra_node.rank();
  const std::size_t elem = comm::size_of(type);
  const ncclDataType_t nt = nccl_type(type);
  const ncclComm_t inter = nccl_comm(inter_node);
  const ncclComm_t intra = nccl_comm(intra_node);
  char* out = static_cast<char*>(recv);
  auto slot = [&](int jj, int ll) { return out + (static_cast<std::size_t>(jj) * L + ll) * count * elem; };
  const std::string what = "hierarchical all-gather";
  Request request = launch(what, {inter, intra}, false, [&](cudaStream_t s) {
    if (slot(j, l) != send) {
      CUDA_CHECK(cudaMemcpyAsync(slot(j, l), send, count * elem, cudaMemcpyDeviceToDevice, s));
    }
    if (J > 1) {
      NCCL_ENQUEUE(ncclGroupStart());
      for (int peer = 0; peer < J; ++peer) {
        if (peer == j) continue;
        NCCL_ENQUEUE(ncclSend(send, count, nt, peer, inter, s));
        NCCL_ENQUEUE(ncclRecv(slot(peer, l), count, nt, peer, inter, s));
      }
      NCCL_ENQUEUE(ncclGroupEnd());
      wait_ready(inter, what);
    }
    NCCL_ENQUEUE(ncclGroupStart());
    for (int block = 0; block < J; ++block) {
      NCCL_ENQUEUE(ncclAllGather(slot(block, l), slot(block, 0), count, nt, intra, s));
    }
    NCCL_ENQUEUE(ncclGroupEnd());
  });
  const std::uint64_t inter_bytes = comm::ring_all_gather_bytes(count, elem, J);
  inter_node.record(inter_bytes, inter_bytes);
  const std::uint64_t intra_bytes = comm::ring_all_gather_bytes(count * static_cast<std::size_t>(J), elem, L);
  intra_node.record(intra_bytes, intra_bytes);
  return request;
}

// --- reductions ----------------------------------------------------------------------------------------------

void NcclCollectives::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                     comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.reduce_scatter(send, recv, count, type, op, comm);
  ireduce_scatter(send, recv, count, type, op, comm).wait();
  CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
}

Request NcclCollectives::ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                         ReduceOp op, comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.ireduce_scatter(send, recv, count, type, op, comm);
  require_floating_for_average(type, op);
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("reduce-scatter", comm), {nccl}, false, [&](cudaStream_t s) {
    NCCL_ENQUEUE(ncclReduceScatter(send, recv, count, nccl_type(type), nccl_op(op), nccl, s));
  });
  const std::uint64_t bytes = comm::ring_reduce_scatter_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
  return request;
}

void NcclCollectives::all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                 comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.all_reduce(send, recv, count, type, op, comm);
  iall_reduce(send, recv, count, type, op, comm).wait();
  CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
}

Request NcclCollectives::iall_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                     comm::Communicator& comm) {
  if (!device_buffers(send, recv)) return host_.iall_reduce(send, recv, count, type, op, comm);
  require_floating_for_average(type, op);
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("all-reduce", comm), {nccl}, false, [&](cudaStream_t s) {
    NCCL_ENQUEUE(ncclAllReduce(send, recv, count, nccl_type(type), nccl_op(op), nccl, s));
  });
  const std::uint64_t bytes = comm::ring_all_reduce_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
  return request;
}

// --- broadcast, barrier ----------------------------------------------------------------------------------------

void NcclCollectives::broadcast(void* buffer, std::size_t count, DataType type, int root, comm::Communicator& comm) {
  if (!is_device_pointer(buffer)) return host_.broadcast(buffer, count, type, root, comm);
  ibroadcast(buffer, count, type, root, comm).wait();
  CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
}

Request NcclCollectives::ibroadcast(void* buffer, std::size_t count, DataType type, int root,
                                    comm::Communicator& comm) {
  if (!is_device_pointer(buffer)) return host_.ibroadcast(buffer, count, type, root, comm);
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("broadcast", comm), {nccl}, false, [&](cudaStream_t s) {
    NCCL_ENQUEUE(ncclBroadcast(buffer, buffer, count, nccl_type(type), root, nccl, s));
  });
  record_broadcast(comm, count, type, root);
  return request;
}

// A barrier synchronises hosts, not streams: MPI's.
void NcclCollectives::barrier(comm::Communicator& comm) { host_.barrier(comm); }
Request NcclCollectives::ibarrier(comm::Communicator& comm) { return host_.ibarrier(comm); }

}  // namespace mics::backends::cuda
