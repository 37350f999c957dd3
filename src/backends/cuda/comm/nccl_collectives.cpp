// NcclCollectives: NCCL communicators from the MPI groups, a communication stream ordered against the
// compute stream with events, and a watchdog that turns a dead peer into an error instead of a hang.
#include "mics/backends/cuda/nccl_collectives.hpp"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <system_error>

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

int set_device(int device) {
  CUDA_CHECK(cudaSetDevice(device));
  return device;
}

std::string label(std::string_view op, const comm::Communicator& comm) {
  return std::string(op) + " on the " + std::string(comm::to_string(comm.kind())) + " group";
}

std::string milliseconds(std::chrono::milliseconds time) { return std::to_string(time.count()) + " ms"; }

// The communicator's state: success, in progress (still enqueueing or initialising) or an error.
ncclResult_t async_state(ncclComm_t comm) {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(comm, &state);
  return rc != ncclSuccess ? rc : state;
}

bool is_error(ncclResult_t state) { return state != ncclSuccess && state != ncclInProgress; }

std::string describe(ncclResult_t state, ncclComm_t comm) {
  std::string text = ncclGetErrorString(state);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') text += std::string(" (") + last + ")";
  return text;
}

// NCCL reads an all-gather's input inside its output only in place: at this rank's block.
void check_in_place(const void* send, const void* recv, std::size_t block_bytes, std::size_t blocks,
                    std::size_t index, const char* what) {
  const auto* s = static_cast<const char*>(send);
  const auto* r = static_cast<const char*>(recv);
  const bool overlaps = s < r + block_bytes * blocks && r < s + block_bytes;
  if (overlaps && s != r + block_bytes * index) {
    throw Error(std::string(what) + ": the input overlaps the output but is not this rank's block of it");
  }
}

}  // namespace

// --- completion handle -------------------------------------------------------------------------------

class NcclCollectives::Pending final : public comm::PendingCollective {
 public:
  Pending(NcclCollectives& owner, std::shared_ptr<Event> done) : owner_(owner), done_(std::move(done)) {}
  // Complete from the compute stream's point of view: its next work runs after the collective. No host
  // wait, and no failure check (Request's destructor calls this): a failure is raised by the next call.
  void wait() override {
    if (ordered_) return;
    CUDA_CHECK(cudaStreamWaitEvent(owner_.compute_stream_, done_->get(), 0));
    ordered_ = true;
  }
  // An aborted collective also completes: the failure is raised instead of its (garbage) result.
  bool test() override {
    owner_.check_failed();
    if (!done_->query()) return false;
    owner_.check_failed();
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
      world_rank_(topology.placement().world_rank),
      compute_stream_(compute_stream),
      host_(host),
      options_(options) {
  // The same order on every rank, one communicator at a time: no two inits can wait on each other. Not the
  // world: the engine moves only host scalars over it, and a world-wide NCCL communicator costs init time
  // and buffers that grow with the cluster. A device-memory world collective makes it on first use (every
  // rank issues that collective, so every rank makes it at the same point).
  try {
    for (comm::Communicator* c : {&topology.partition(), &topology.replication(), &topology.intra_node(),
                                  &topology.inter_node()}) {
      if (c->valid()) nccl_comm(*c);
    }
  } catch (...) {
    await_aborts();  // no destructor runs after a constructor throws: wait for the aborts it started here
    throw;
  }
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

// A rank that is unwinding an exception is about to abort the job: its peers will not finalize with it, so
// its communicators are aborted. A failure the watchdog recorded that nothing raised (it came after the
// main thread's last call) makes the results suspect: the job stops here. Otherwise each communicator is
// finalized (which waits for its issued work), polled and destroyed in turn, in the same order on every
// rank, under one deadline; at the first one not done, it and the rest are aborted, with a message. In
// every case the aborts are waited for (bounded): the process must not exit while NCCL is inside one.
NcclCollectives::~NcclCollectives() {
  stop_ = true;
  if (watchdog_.joinable()) watchdog_.join();
  const bool unwinding = std::uncaught_exceptions() > 0;
  if (failed_ && !raised_ && !unwinding) {
    await_aborts();
    fatal_one(failure_);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (unwinding) {
      abort_locked("shutting down after an error");
    } else if (!aborted_) {
      finalize_locked();
    }
  }
  await_aborts();
}

void NcclCollectives::finalize_locked() {
  // Finalize completes when every rank has arrived (a peer may still be writing a checkpoint): the same
  // allowance as a collective.
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  aborted_ = true;  // from here on no communicator is used again, whatever happens below
  for (std::size_t i = 0; i < comms_.size(); ++i) {
    const ncclComm_t nccl = comms_[i].second;
    ncclResult_t state = ncclCommFinalize(nccl);
    while (state == ncclInProgress && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      state = async_state(nccl);
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(nccl);
      continue;
    }
    const std::string why = state == ncclInProgress ? "did not finalize within " + milliseconds(options_.timeout)
                                                    : "failed to finalize: " + describe(state, nccl);
    std::fprintf(stderr, "mics: rank %d: an NCCL communicator %s; aborting it and the %zu after it\n", world_rank_,
                 why.c_str(), comms_.size() - i - 1);
    std::fflush(stderr);
    std::vector<ncclComm_t> rest;
    for (std::size_t k = i; k < comms_.size(); ++k) rest.push_back(comms_[k].second);
    start_aborts(rest);
    return;
  }
}

// ncclCommAbort blocks until its communicator's device work has drained, and with one comm stream that work
// can sit behind another communicator's stuck kernel, which only that communicator's abort ends: the aborts
// run together, one thread each, and the caller (who may hold the lock) does not wait for them, so the
// main thread's error and the watchdog's last resort still run. No other NCCL call is made meanwhile:
// aborted_ gates every one. The threads hold only the handles and a shared count that the destructor
// waits on.
void NcclCollectives::start_aborts(const std::vector<ncclComm_t>& comms) {
  for (ncclComm_t nccl : comms) {
    aborts_running_->fetch_add(1);
    try {
      std::thread([nccl, running = aborts_running_] {
        ncclCommAbort(nccl);
        running->fetch_sub(1);
      }).detach();
    } catch (const std::system_error& e) {
      // No thread to be had. An abort here could wait, holding the lock, for a kernel only another abort
      // ends, with the last resort (the watchdog) locked out: end the process instead.
      std::fprintf(stderr, "mics: error on rank %d: cannot start a thread to abort an NCCL communicator (%s): exiting\n",
                   world_rank_, e.what());
      std::fflush(stderr);
      std::_Exit(kExitFailure);
    }
  }
}

void NcclCollectives::await_aborts() const {
  const Clock::time_point deadline = Clock::now() + options_.exit_grace;
  while (aborts_running_->load() > 0) {
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "mics: error on rank %d: aborting the NCCL communicators took over %s: exiting\n",
                   world_rank_, milliseconds(options_.exit_grace).c_str());
      std::fflush(stderr);
      std::_Exit(kExitFailure);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

ncclComm_t NcclCollectives::nccl_comm(comm::Communicator& comm) {
  for (const auto& [mpi, nccl] : comms_)
    if (mpi == comm.handle()) return nccl;
  const ncclComm_t nccl = create(comm);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_) {
      start_aborts({nccl});  // the others were aborted while this one was made
    } else {
      comms_.emplace_back(comm.handle(), nccl);
    }
  }
  check_failed();
  return nccl;
}

ncclComm_t NcclCollectives::create(const comm::Communicator& comm) {
  check_failed();
  ncclUniqueId id{};
  if (comm.rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MICS_MPI_CHECK(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm.handle()));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t nccl = nullptr;
  const std::string what = "NCCL init of the " + std::string(comm::to_string(comm.kind())) + " communicator";
  // Not yet in comms_ (the watchdog does not see it): aborted here before failing.
  const auto give_up = [&](const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (nccl != nullptr) start_aborts({nccl});
    }
    fail(message);
  };
  ncclResult_t state = ncclInProgress;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_) state = ncclCommInitRankConfig(&nccl, comm.size(), id, comm.rank(), &config);
  }
  const Clock::time_point start = Clock::now();
  while (state == ncclInProgress) {
    if (failed_) give_up(what + " interrupted");
    if (Clock::now() - start > options_.init_timeout) {
      give_up(what + " did not finish within " + milliseconds(options_.init_timeout) +
              " (a peer is missing, or the network is blocked)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_) state = async_state(nccl);  // once aborted, the next turn gives up (failed_ is set)
  }
  if (state != ncclSuccess) give_up(what + " failed: " + ncclGetErrorString(state));
  return nccl;
}

// --- failure handling ------------------------------------------------------------------------------------

void NcclCollectives::check_failed() const {
  if (!failed_) return;
  raised_ = true;
  throw Error(failure_);  // written before failed_ and never after it: no lock (abort_locked may hold it)
}

void NcclCollectives::abort_locked(const std::string& message) {
  if (failure_.empty()) failure_ = message;
  // Failed before any abort: the abort ends the stuck kernels, and a host thread that then sees its
  // collective complete must find the failure, not take the garbage result for a success.
  failed_ = true;
  if (aborted_) return;
  aborted_ = true;
  std::vector<ncclComm_t> comms;
  for (const auto& [mpi, nccl] : comms_) comms.push_back(nccl);
  start_aborts(comms);
}

void NcclCollectives::fail(const std::string& message) {
  std::string first;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    abort_locked(message);
    first = failure_;
  }
  raised_ = true;
  throw Error(first);
}

bool NcclCollectives::on_device(const void* send, const void* recv) {
  check_failed();
  return device_buffers(send, recv);
}

void NcclCollectives::wait_ready(ncclComm_t comm, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    ncclResult_t state = ncclSuccess;
    std::string detail;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_) state = async_state(comm);
      if (is_error(state)) detail = describe(state, comm);
    }
    check_failed();
    if (state == ncclSuccess) return;
    if (!detail.empty()) fail("NCCL error while enqueueing " + what + ": " + detail);
    if (Clock::now() - start > options_.timeout) {
      fail("NCCL could not enqueue " + what + " within " + milliseconds(options_.timeout));
    }
    std::this_thread::yield();
  }
}

void NcclCollectives::block(const Event& done, const std::string& what) {
  const Clock::time_point start = Clock::now();
  while (true) {
    check_failed();
    if (done.query()) break;
    // The watchdog checks this collective's communicators; the timeout here only backs it up.
    if (Clock::now() - start > options_.timeout) {
      fail(what + " did not finish within " + milliseconds(options_.timeout) + ": a peer is dead or stuck");
    }
    std::this_thread::yield();
  }
  check_failed();  // an abort also completes the collective
}

void NcclCollectives::watchdog_loop() {
  if (cudaSetDevice(device_) != cudaSuccess) cudaGetLastError();  // event queries work without it
  while (!stop_) {
    std::this_thread::sleep_for(options_.watchdog_period);
    if (failed_) break;
    std::string failure;
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted_) break;  // the main thread failed meanwhile: the communicators are gone
    const Clock::time_point now = Clock::now();
    for (std::size_t i = 0; i < in_flight_.size() && failure.empty();) {
      InFlight& op = in_flight_[i];
      const cudaError_t rc = cudaEventQuery(op.done->get());
      if (rc == cudaSuccess) {
        in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));  // keep issue order (abort_locked)
        continue;
      }
      if (rc != cudaErrorNotReady) {
        failure = op.what + ": CUDA error " + cudaGetErrorString(rc);
        break;
      }
      for (ncclComm_t c : op.comms) {
        const ncclResult_t state = async_state(c);
        if (is_error(state)) {
          failure = "NCCL error during " + op.what + ": " + describe(state, c);
          break;
        }
      }
      if (failure.empty() && now - op.start > options_.timeout) {
        failure = op.what + " did not finish within " + milliseconds(options_.timeout) +
                  ": a peer is dead or stuck";
      }
      ++i;
    }
    if (!failure.empty()) {
      abort_locked(failure);
      std::fprintf(stderr, "mics: error on rank %d: %s: NCCL communicators aborted\n", world_rank_, failure.c_str());
      std::fflush(stderr);
      break;
    }
  }
  if (failed_) await_main_thread();
}

// Last resort. The main thread raises the failure at its next call into these collectives, and the job
// stops through fatal_one (MPI_Abort on the main thread). It may instead be blocked in an MPI call that a
// peer never joins (that peer hangs elsewhere): then MPI_Abort from here would be the only way out, but
// MPI runs with MPI_THREAD_FUNNELED, which forbids any MPI call from this thread. Exiting without
// MPI_Finalize makes the launcher (mpirun, srun) end the job instead.
void NcclCollectives::await_main_thread() {
  const Clock::time_point start = Clock::now();
  while (!stop_) {
    if (Clock::now() - start > options_.exit_grace) {
      // failure_ is final once failed_ is set: read without the lock
      std::fprintf(stderr, "mics: error on rank %d: %s; the main thread did not stop within %s: exiting\n",
                   world_rank_, failure_.c_str(), milliseconds(options_.exit_grace).c_str());
      std::fflush(stderr);
      std::_Exit(kExitFailure);
    }
    std::this_thread::sleep_for(options_.watchdog_period);
  }
}

// --- issuing -----------------------------------------------------------------------------------------------

Request NcclCollectives::launch(const std::string& what, const std::vector<Phase>& phases, bool blocking) {
  check_failed();
  // The data is ready once the compute stream's work so far is done.
  ready_.record(compute_stream_);
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_.get(), ready_.get(), 0));
  std::vector<ncclComm_t> comms;
  for (const Phase& phase : phases) {
    std::string error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_) {
        const ncclResult_t rc = phase.enqueue(comm_stream_.get());
        if (is_error(rc)) error = "NCCL error while issuing " + what + ": " + describe(rc, phase.comm);
      }
    }
    check_failed();
    if (!error.empty()) fail(error);
    // A non-blocking communicator may still be enqueueing: the next phase and the event come after.
    if (phase.comm != nullptr) {
      wait_ready(phase.comm, what);
      comms.push_back(phase.comm);
    }
  }
  auto done = std::make_shared<Event>();
  done->record(comm_stream_.get());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_.push_back(InFlight{done, Clock::now(), what, comms});
  }
  auto pending = std::make_unique<Pending>(*this, done);
  if (!blocking) return Request(std::move(pending));
  pending->wait();
  block(*done, what);
  return Request();
}

// --- all-gather ----------------------------------------------------------------------------------------------

void NcclCollectives::all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                 comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.all_gather(send, recv, count, type, comm);
  all_gather_on(send, recv, count, type, comm, true);
}

Request NcclCollectives::iall_gather(const void* send, void* recv, std::size_t count, DataType type,
                                     comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.iall_gather(send, recv, count, type, comm);
  return all_gather_on(send, recv, count, type, comm, false);
}

Request NcclCollectives::all_gather_on(const void* send, void* recv, std::size_t count, DataType type,
                                       comm::Communicator& comm, bool blocking) {
  const std::size_t elem = comm::size_of(type);
  check_in_place(send, recv, count * elem, static_cast<std::size_t>(comm.size()),
                 static_cast<std::size_t>(comm.rank()), "all-gather");
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("all-gather", comm), {{nccl, [=](cudaStream_t s) {
                                                          return ncclAllGather(send, recv, count, nccl_type(type),
                                                                               nccl, s);
                                                        }}},
                           blocking);
  const std::uint64_t bytes = comm::ring_all_gather_bytes(count, elem, comm.size());
  comm.record(bytes, bytes);
  return request;
}

void NcclCollectives::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                              comm::Communicator& inter_node, comm::Communicator& intra_node) {
  if (!on_device(send, recv)) {
    return host_.hierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  hierarchical_on(send, recv, count, type, inter_node, intra_node, true);
}

Request NcclCollectives::ihierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                                  comm::Communicator& inter_node, comm::Communicator& intra_node) {
  if (!on_device(send, recv)) {
    return host_.ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node);
  }
  return hierarchical_on(send, recv, count, type, inter_node, intra_node, false);
}

// Shard q = j*L + l of the output sits at q*c. Stage 1 (inter-node group, rank j of J): this rank's shard
// goes to slot j*L + l, and every peer j' sends its shard to slot j'*L + l. Stage 2 (intra-node group, rank
// l of L): for each j', an in-place all-gather of the L slots j'*L .. j'*L + L-1 completes block j' (NCCL's
// in-place form: the input is the output at rank l's block). Stage 2 is issued once stage 1 is enqueued,
// so it follows it on the stream.
Request NcclCollectives::hierarchical_on(const void* send, void* recv, std::size_t count, DataType type,
                                         comm::Communicator& inter_node, comm::Communicator& intra_node,
                                         bool blocking) {
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
  const ncclComm_t inter = nccl_comm(inter_node);
  const ncclComm_t intra = nccl_comm(intra_node);
  const Phase inter_stage{inter, [=](cudaStream_t s) {
                            if (slot(j, l) != send && count > 0) {
                              if (cudaMemcpyAsync(slot(j, l), send, count * elem, cudaMemcpyDeviceToDevice, s) !=
                                  cudaSuccess)
                                return ncclUnhandledCudaError;
                            }
                            if (J == 1) return ncclSuccess;
                            ncclResult_t rc = ncclGroupStart();
                            for (int peer = 0; peer < J && !is_error(rc); ++peer) {
                              if (peer == j) continue;
                              rc = ncclSend(send, count, nt, peer, inter, s);
                              if (!is_error(rc)) rc = ncclRecv(slot(peer, l), count, nt, peer, inter, s);
                            }
                            const ncclResult_t end = ncclGroupEnd();
                            return is_error(rc) ? rc : end;
                          }};
  const Phase intra_stage{intra, [=](cudaStream_t s) {
                            ncclResult_t rc = ncclGroupStart();
                            for (int block = 0; block < J && !is_error(rc); ++block) {
                              rc = ncclAllGather(slot(block, l), slot(block, 0), count, nt, intra, s);
                            }
                            const ncclResult_t end = ncclGroupEnd();
                            return is_error(rc) ? rc : end;
                          }};
  Request request = launch("hierarchical all-gather", {inter_stage, intra_stage}, blocking);
  comm::record_hierarchical_all_gather(inter_node, intra_node, count, elem);
  return request;
}

// --- reductions ----------------------------------------------------------------------------------------------

void NcclCollectives::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                     comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.reduce_scatter(send, recv, count, type, op, comm);
  reduce_scatter_on(send, recv, count, type, op, comm, true);
}

Request NcclCollectives::ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                         ReduceOp op, comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.ireduce_scatter(send, recv, count, type, op, comm);
  return reduce_scatter_on(send, recv, count, type, op, comm, false);
}

Request NcclCollectives::reduce_scatter_on(const void* send, void* recv, std::size_t count, DataType type,
                                           ReduceOp op, comm::Communicator& comm, bool blocking) {
  comm::require_floating_for_average(type, op);
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("reduce-scatter", comm), {{nccl, [=](cudaStream_t s) {
                                                              return ncclReduceScatter(send, recv, count,
                                                                                       nccl_type(type), nccl_op(op),
                                                                                       nccl, s);
                                                            }}},
                           blocking);
  const std::uint64_t bytes = comm::ring_reduce_scatter_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
  return request;
}

void NcclCollectives::all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                 comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.all_reduce(send, recv, count, type, op, comm);
  all_reduce_on(send, recv, count, type, op, comm, true);
}

Request NcclCollectives::iall_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                     comm::Communicator& comm) {
  if (!on_device(send, recv)) return host_.iall_reduce(send, recv, count, type, op, comm);
  return all_reduce_on(send, recv, count, type, op, comm, false);
}

Request NcclCollectives::all_reduce_on(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                       comm::Communicator& comm, bool blocking) {
  comm::require_floating_for_average(type, op);
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("all-reduce", comm), {{nccl, [=](cudaStream_t s) {
                                                          return ncclAllReduce(send, recv, count, nccl_type(type),
                                                                               nccl_op(op), nccl, s);
                                                        }}},
                           blocking);
  const std::uint64_t bytes = comm::ring_all_reduce_bytes(count, comm::size_of(type), comm.size());
  comm.record(bytes, bytes);
  return request;
}

// --- broadcast, barrier ----------------------------------------------------------------------------------------

void NcclCollectives::broadcast(void* buffer, std::size_t count, DataType type, int root, comm::Communicator& comm) {
  if (!on_device(buffer, buffer)) return host_.broadcast(buffer, count, type, root, comm);
  broadcast_on(buffer, count, type, root, comm, true);
}

Request NcclCollectives::ibroadcast(void* buffer, std::size_t count, DataType type, int root,
                                    comm::Communicator& comm) {
  if (!on_device(buffer, buffer)) return host_.ibroadcast(buffer, count, type, root, comm);
  return broadcast_on(buffer, count, type, root, comm, false);
}

Request NcclCollectives::broadcast_on(void* buffer, std::size_t count, DataType type, int root,
                                      comm::Communicator& comm, bool blocking) {
  const ncclComm_t nccl = nccl_comm(comm);
  Request request = launch(label("broadcast", comm), {{nccl, [=](cudaStream_t s) {
                                                         return ncclBroadcast(buffer, buffer, count, nccl_type(type),
                                                                              root, nccl, s);
                                                       }}},
                           blocking);
  comm::record_broadcast(comm, count, type, root);
  return request;
}

// A barrier synchronises hosts, not streams: MPI's.
void NcclCollectives::barrier(comm::Communicator& comm) {
  check_failed();
  host_.barrier(comm);
}

Request NcclCollectives::ibarrier(comm::Communicator& comm) {
  check_failed();
  return host_.ibarrier(comm);
}

}  // namespace mics::backends::cuda
