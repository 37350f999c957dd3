// MPI on host memory: the data channel of the CPU backend, and the host channel of every backend.
#include "mics/comm/mpi_transport.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>
#include <string>
#include <utility>
#include <vector>

namespace mics::comm {

namespace {

// bf16 reductions: combine in float, round the result back to bf16.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = bf16(a[i].to_float() + b[i].to_float());
}
void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) {
    if (a[i].to_float() > b[i].to_float()) b[i] = a[i];
  }
}

int int_count(std::size_t count) {
  if (count > static_cast<std::size_t>(INT_MAX)) {
    throw InputError("collective of " + std::to_string(count) + " elements exceeds the MPI count limit " +
                std::to_string(INT_MAX));
  }
  return static_cast<int>(count);
}

// Divide `count` elements by `divisor` in place (the second half of an average).
void divide(void* buffer, std::size_t count, DataType type, int divisor) {
  switch (type) {
    case DataType::f32: {
      float* x = static_cast<float*>(buffer);
      const float d = static_cast<float>(divisor);
      for (std::size_t i = 0; i < count; ++i) x[i] /= d;
      break;
    }
    case DataType::f64: {
      double* x = static_cast<double*>(buffer);
      const double d = divisor;
      for (std::size_t i = 0; i < count; ++i) x[i] /= d;
      break;
    }
    case DataType::bf16: {
      bf16* x = static_cast<bf16*>(buffer);
      const float d = static_cast<float>(divisor);
      for (std::size_t i = 0; i < count; ++i) x[i] = bf16(x[i].to_float() / d);
      break;
    }
    case DataType::i32:
    case DataType::i64: break;  // rejected before the collective ran
  }
}

// A committed derived datatype, freed with its owner.
class OwnedType {
 public:
  explicit OwnedType(MPI_Datatype type) : type_(type) { MICS_MPI_CHECK(MPI_Type_commit(&type_)); }
  ~OwnedType() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (type_ != MPI_DATATYPE_NULL && !finalized) MPI_Type_free(&type_);
  }
  OwnedType(OwnedType&& other) noexcept : type_(std::exchange(other.type_, MPI_DATATYPE_NULL)) {}
  OwnedType& operator=(OwnedType&&) = delete;
  OwnedType(const OwnedType&) = delete;
  OwnedType& operator=(const OwnedType&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_;
};

// `count` elements of `base`, placed every `stride` elements `blocks` times, with extent `extent`
// elements, so consecutive items of this type interleave.
OwnedType strided_type(MPI_Datatype base, std::size_t elem, int blocks, int count, std::size_t stride,
                       std::size_t extent) {
  MPI_Datatype vector = MPI_DATATYPE_NULL, resized = MPI_DATATYPE_NULL;
  MICS_MPI_CHECK(MPI_Type_vector(blocks, count, static_cast<int>(stride), base, &vector));
  MICS_MPI_CHECK(MPI_Type_create_resized(vector, 0, static_cast<MPI_Aint>(extent * elem), &resized));
  MICS_MPI_CHECK(MPI_Type_free(&vector));
  return OwnedType(resized);
}

// "the partition group (world ranks 0, 1, 2, 3)": which ranks a stuck operation was waiting on.
std::string describe_group(MPI_Comm comm, GroupKind kind) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> local(static_cast<std::size_t>(size)), global(local.size());
  for (int i = 0; i < size; ++i) local[static_cast<std::size_t>(i)] = i;
  MPI_Group_translate_ranks(group, size, local.data(), world, global.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  std::string text = "the " + std::string(topology::to_string(kind)) + " group (world ranks";
  for (std::size_t i = 0; i < global.size() && i < 16; ++i) text += (i ? ", " : " ") + std::to_string(global[i]);
  if (global.size() > 16) text += ", ...";
  return text + ")";
}

// MPI_Wait that gives up once `limit` passes without completion (0: waits as long as it takes). MPI cannot
// cancel a collective, so giving up means this rank's error: the job is aborted with the reason.
// `progress`, when given, is asked about once a second whether the work being waited for advanced
// (elsewhere, e.g. a file growing): yes restarts the clock.
void wait_or_give_up_on(MPI_Request& request, std::chrono::milliseconds limit, const char* what, MPI_Comm comm,
                        GroupKind kind, const std::function<bool()>& progress = {}) {
  if (limit.count() <= 0) {
    MICS_MPI_CHECK(MPI_Wait(&request, MPI_STATUS_IGNORE));
    return;
  }
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_progress = Clock::now(), last_asked = last_progress;
  for (;;) {
    int done = 0;
    MICS_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const Clock::time_point now = Clock::now();
    if (progress && now - last_asked > std::chrono::seconds(1)) {
      last_asked = now;
      if (progress()) last_progress = now;
    }
    if (now - last_progress > limit) {
      char minutes[32];
      std::snprintf(minutes, sizeof minutes, "%g", std::chrono::duration<double>(limit).count() / 60.0);
      throw PeerError(std::string(what) + " on " + describe_group(comm, kind) + " made no progress for " + minutes +
                      " min (run.timeout): a rank of that group is stopped, stuck (in I/O, in a long computation) or "
                      "dead");
    }
    std::this_thread::yield();
  }
}

std::function<void()> average_step(void* recv, std::size_t count, DataType type, ReduceOp op, int ranks) {
  if (op != ReduceOp::average) return {};
  return [recv, count, type, ranks] { divide(recv, count, type, ranks); };
}

}  // namespace


// MPI requests (usually one) plus what must happen (average division) or stay alive (datatypes, an
// intermediate buffer captured by on_complete) until they all end. A tracked one is on its transport's
// in-flight list until it completes, so progress() reaches it.
class MpiTransport::Pending final : public PendingCollective {
 public:
  // what, group: for the message when the operation makes no progress for `limit` (0: no limit).
  Pending(MpiTransport* tracker, MPI_Request request, std::function<void()> on_complete, const char* what,
          const Group& group, std::chrono::milliseconds limit, std::vector<OwnedType> types = {})
      : Pending(tracker, std::vector<MPI_Request>{request}, std::move(on_complete), what, group, limit,
                std::move(types)) {}
  Pending(MpiTransport* tracker, std::vector<MPI_Request> requests, std::function<void()> on_complete,
          const char* what, const Group& group, std::chrono::milliseconds limit, std::vector<OwnedType> types = {})
      : tracker_(tracker),
        requests_(std::move(requests)),
        on_complete_(std::move(on_complete)),
        what_(what),
        comm_(group.handle()),
        kind_(group.kind()),
        limit_(limit),
        types_(std::move(types)) {
    if (tracker_) tracker_->track(this);
  }
  ~Pending() override {
    // Unfinished: an error unwinds past it (Request never drops an unfinished operation otherwise). Its peers
    // may never come, and the job is about to be aborted: waiting here could hang the abort, so it is left.
    if (tracker_) tracker_->untrack(this);
  }
  bool test() override {
    if (finished_) return true;
    int flag = 0;
    MICS_MPI_CHECK(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &flag, MPI_STATUSES_IGNORE));
    if (flag) complete();
    return flag != 0;
  }
  void wait() override {
    if (finished_) return;
    for (MPI_Request& request : requests_) wait_or_give_up_on(request, limit_, what_, comm_, kind_);
    complete();
  }

 private:
  void complete() {
    finished_ = true;
    if (tracker_) tracker_->untrack(this);
    tracker_ = nullptr;
    if (on_complete_) on_complete_();
    types_.clear();
  }
  MpiTransport* tracker_;
  std::vector<MPI_Request> requests_;
  bool finished_ = false;
  std::function<void()> on_complete_;
  const char* what_;
  MPI_Comm comm_;
  GroupKind kind_;
  std::chrono::milliseconds limit_;
  std::vector<OwnedType> types_;
};

// Two stages: the first runs, and whichever test()/wait() sees it end starts the second. Only the whole is
// tracked (its stages are not), so progress() starts the second stage.
class MpiTransport::TwoStage final : public PendingCollective {
 public:
  TwoStage(MpiTransport& tracker, std::unique_ptr<PendingCollective> first,
           std::function<std::unique_ptr<PendingCollective>()> second)
      : tracker_(&tracker), current_(std::move(first)), start_second_(std::move(second)) {
    tracker_->track(this);
  }
  ~TwoStage() override {
    if (tracker_) tracker_->untrack(this);
  }
  bool test() override {
    if (!current_->test()) return false;
    if (start_second_) {
      current_ = std::exchange(start_second_, nullptr)();
      if (!current_->test()) return false;
    }
    finished();
    return true;
  }
  void wait() override {
    current_->wait();
    if (start_second_) {
      current_ = std::exchange(start_second_, nullptr)();
      current_->wait();
    }
    finished();
  }

 private:
  void finished() {
    if (tracker_) tracker_->untrack(this);
    tracker_ = nullptr;
  }
  MpiTransport* tracker_;
  std::unique_ptr<PendingCollective> current_;
  std::function<std::unique_ptr<PendingCollective>()> start_second_;
};

void wait_or_give_up(MPI_Request& request, std::chrono::milliseconds limit, const char* what, const Group& group,
                     const std::function<bool()>& progress) {
  wait_or_give_up_on(request, limit, what, group.handle(), group.kind(), progress);
}

MpiTransport::MpiTransport(std::chrono::milliseconds no_progress_limit) : no_progress_limit_(no_progress_limit) {
  MICS_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type_));
  MICS_MPI_CHECK(MPI_Type_commit(&bf16_type_));
  MICS_MPI_CHECK(MPI_Op_create(&bf16_sum, 1, &bf16_sum_));
  MICS_MPI_CHECK(MPI_Op_create(&bf16_max, 1, &bf16_max_));
}

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  MPI_Op_free(&bf16_max_);
  MPI_Op_free(&bf16_sum_);
  MPI_Type_free(&bf16_type_);
}

MPI_Datatype MpiTransport::mpi_type(DataType type) const {
  switch (type) {
    case DataType::f32: return MPI_FLOAT;
    case DataType::bf16: return bf16_type_;
    case DataType::i32: return MPI_INT32_T;
    case DataType::i64: return MPI_INT64_T;
    case DataType::f64: return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiTransport::mpi_op(DataType type, ReduceOp op) const {
  const bool is_max = op == ReduceOp::max;
  if (type == DataType::bf16) return is_max ? bf16_max_ : bf16_sum_;
  return is_max ? MPI_MAX : MPI_SUM;
}

void MpiTransport::untrack(PendingCollective* op) {
  const auto found = std::find(in_flight_.begin(), in_flight_.end(), op);
  if (found != in_flight_.end()) in_flight_.erase(found);
}

void MpiTransport::progress() {
  // test() removes finished operations from the list: walk a snapshot (nothing is destroyed meanwhile).
  const std::vector<PendingCollective*> snapshot = in_flight_;
  for (PendingCollective* op : snapshot) {
    if (std::find(in_flight_.begin(), in_flight_.end(), op) != in_flight_.end()) op->test();
  }
}

// --- the data channel ----------------------------------------------------------------------------------

Request MpiTransport::all_gather(const void* send, void* recv, std::size_t count, DataType type, const Group& group) {
  const int n = int_count(count);
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallgather(send, n, mpi_type(type), recv, n, mpi_type(type), group.handle(), &request));
  return Request(std::make_unique<Pending>(this, request, nullptr, "an all-gather", group, no_progress_limit_));
}

// Shard i of the output sits at i*c; this rank is shard j*L + l (j = inter rank, l = intra rank).
// Stage 1 gathers shards l, L+l, 2L+l, ... from the inter-node group straight into their slots (a
// receive type of c elements with extent L*c). Stage 2 gathers in place over the intra-node group with
// a type covering a rank's J slots (J blocks of c, pitch L*c, extent c), completing every slot.
Request MpiTransport::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                              const Group& inter_node, const Group& intra_node) {
  const int c = int_count(count);
  const int J = inter_node.size();
  const int L = intra_node.size();
  const int l = intra_node.rank();
  const std::size_t elem = size_of(type);
  const MPI_Datatype base = mpi_type(type);
  int_count(count * static_cast<std::size_t>(J) * static_cast<std::size_t>(L));  // strides must fit an int

  std::vector<OwnedType> inter_types;
  inter_types.push_back(strided_type(base, elem, 1, c, 0, static_cast<std::size_t>(L) * count));
  char* out = static_cast<char*>(recv);
  MPI_Request inter_request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallgather(send, c, base, out + static_cast<std::size_t>(l) * count * elem, 1,
                                inter_types.front().get(), inter_node.handle(), &inter_request));

  auto first = std::make_unique<Pending>(nullptr, inter_request, nullptr, "the inter-node all-gather", inter_node,
                                         no_progress_limit_, std::move(inter_types));
  MPI_Comm intra = intra_node.handle();
  const Group* intra_group = &intra_node;
  const std::chrono::milliseconds limit = no_progress_limit_;
  auto second = [=]() -> std::unique_ptr<PendingCollective> {
    std::vector<OwnedType> intra_types;
    intra_types.push_back(strided_type(base, elem, J, c, static_cast<std::size_t>(L) * count, count));
    MPI_Request intra_request = MPI_REQUEST_NULL;
    MICS_MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, 1, intra_types.front().get(), intra,
                                  &intra_request));
    return std::make_unique<Pending>(nullptr, intra_request, nullptr, "the intra-node all-gather", *intra_group, limit,
                                     std::move(intra_types));
  };
  return Request(std::make_unique<TwoStage>(*this, std::move(first), std::move(second)));
}

Request MpiTransport::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                     const Group& group) {
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const int n = int_count(count);
  int_count(count * static_cast<std::size_t>(group.size()));
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(
      MPI_Ireduce_scatter_block(send, recv, n, mpi_type(type), mpi_op(type, op), group.handle(), &request));
  return Request(std::make_unique<Pending>(this, request, average_step(recv, count, type, op, group.size()),
                                           "a reduce-scatter", group, no_progress_limit_));
}

// Input shard q = j'*L + l' at q*c: row j' (shards j'*L .. j'*L + L-1) is contiguous. Stage 1 reduce-scatters
// each row over the intra-node group, so this rank (local index l) holds the node's partial sums of shards
// j'*L + l, for every j', at j'*c of the intermediate; stage 2 reduce-scatters that over the inter-node
// group (J ranks with local index l), and rank j keeps the full sum of shard j*L + l.
Request MpiTransport::hierarchical_reduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                                  ReduceOp op, const Group& inter_node, const Group& intra_node) {
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const int c = int_count(count);
  const int J = inter_node.size();
  const int L = intra_node.size();
  const std::size_t elem = size_of(type);
  int_count(count * static_cast<std::size_t>(J) * static_cast<std::size_t>(L));
  const MPI_Datatype base = mpi_type(type);
  const MPI_Op reduce = mpi_op(type, op);  // an average sums here and divides once at the end
  auto intermediate = std::make_shared<std::vector<unsigned char>>(count * static_cast<std::size_t>(J) * elem);
  const auto* in = static_cast<const unsigned char*>(send);
  std::vector<MPI_Request> rows(static_cast<std::size_t>(J), MPI_REQUEST_NULL);
  for (int row = 0; row < J; ++row) {
    MICS_MPI_CHECK(MPI_Ireduce_scatter_block(in + static_cast<std::size_t>(row) * L * count * elem,
                                             intermediate->data() + static_cast<std::size_t>(row) * count * elem, c,
                                             base, reduce, intra_node.handle(), &rows[static_cast<std::size_t>(row)]));
  }
  auto first = std::make_unique<Pending>(nullptr, std::move(rows), [intermediate] {},
                                         "the intra-node reduce-scatter", intra_node, no_progress_limit_);
  MPI_Comm inter = inter_node.handle();
  const Group* inter_group = &inter_node;
  const std::chrono::milliseconds limit = no_progress_limit_;
  std::function<void()> average = average_step(recv, count, type, op, J * L);
  auto second = [=]() -> std::unique_ptr<PendingCollective> {
    MPI_Request request = MPI_REQUEST_NULL;
    MICS_MPI_CHECK(MPI_Ireduce_scatter_block(intermediate->data(), recv, c, base, reduce, inter, &request));
    return std::make_unique<Pending>(
        nullptr, request, [intermediate, average] {
          if (average) average();
        },
        "the inter-node reduce-scatter", *inter_group, limit);
  };
  return Request(std::make_unique<TwoStage>(*this, std::move(first), std::move(second)));
}

Request MpiTransport::all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group) {
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buffer, int_count(count), mpi_type(type), mpi_op(type, op),
                                group.handle(), &request));
  return Request(std::make_unique<Pending>(this, request, average_step(buffer, count, type, op, group.size()),
                                           "an all-reduce", group, no_progress_limit_));
}

Request MpiTransport::broadcast(void* buffer, std::size_t count, DataType type, int root, const Group& group) {
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Ibcast(buffer, int_count(count), mpi_type(type), root, group.handle(), &request));
  return Request(std::make_unique<Pending>(this, request, nullptr, "a broadcast", group, no_progress_limit_));
}

// --- the host channel ------------------------------------------------------------------------------------

void MpiTransport::host_all_reduce(void* buffer, std::size_t count, DataType type, ReduceOp op, const Group& group) {
  if (no_progress_limit_.count() <= 0) {
    MICS_MPI_CHECK(
        MPI_Allreduce(MPI_IN_PLACE, buffer, int_count(count), mpi_type(type), mpi_op(type, op), group.handle()));
  } else {
    MPI_Request request = MPI_REQUEST_NULL;
    MICS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buffer, int_count(count), mpi_type(type), mpi_op(type, op),
                                  group.handle(), &request));
    wait_or_give_up(request, no_progress_limit_, "an all-reduce of host scalars", group);
  }
  if (op == ReduceOp::average) divide(buffer, count, type, group.size());
}

void MpiTransport::barrier(const Group& group) {
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Ibarrier(group.handle(), &request));
  wait_or_give_up(request, no_progress_limit_, "a barrier", group);
}

}  // namespace mics::comm
