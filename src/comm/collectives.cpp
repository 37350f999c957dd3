#include "mics/comm/collectives.hpp"

#include <climits>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mics::comm {

std::size_t size_of(DataType type) {
  switch (type) {
    case DataType::f32: return 4;
    case DataType::bf16: return 2;
    case DataType::i32: return 4;
    case DataType::i64: return 8;
    case DataType::f64: return 8;
  }
  return 0;
}

std::string_view to_string(DataType type) {
  switch (type) {
    case DataType::f32: return "float";
    case DataType::bf16: return "bfloat16";
    case DataType::i32: return "int32";
    case DataType::i64: return "int64";
    case DataType::f64: return "double";
  }
  return "unknown";
}

std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::average: return "avg";
    case ReduceOp::max: return "max";
  }
  return "unknown";
}

namespace detail {
void size_mismatch(std::string_view what, std::size_t got, std::size_t expected) {
  throw Error(std::string(what) + " holds " + std::to_string(got) + " elements, expected " +
              std::to_string(expected));
}
}  // namespace detail

void require_floating_for_average(DataType type, ReduceOp op) {
  if (op == ReduceOp::average && (type == DataType::i32 || type == DataType::i64)) {
    throw Error("average reduction needs a floating element type, got " + std::string(to_string(type)));
  }
}

void record_broadcast(Communicator& comm, std::size_t count, DataType type, int root) {
  const std::uint64_t bytes = comm.size() > 1 ? count * size_of(type) : 0;
  if (comm.rank() == root) {
    comm.record(bytes, 0);
  } else {
    comm.record(0, bytes);
  }
}

void record_hierarchical_all_gather(Communicator& inter_node, Communicator& intra_node, std::size_t count,
                                    std::size_t elem) {
  const std::uint64_t inter_bytes = ring_all_gather_bytes(count, elem, inter_node.size());
  inter_node.record(inter_bytes, inter_bytes);
  const std::uint64_t intra_bytes =
      ring_all_gather_bytes(count * static_cast<std::size_t>(inter_node.size()), elem, intra_node.size());
  intra_node.record(intra_bytes, intra_bytes);
}

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
    throw Error("collective of " + std::to_string(count) + " elements exceeds the MPI count limit " +
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

// One MPI request plus what must happen (average division) or stay alive (datatypes) until it ends.
class MpiPending final : public PendingCollective {
 public:
  MpiPending(MPI_Request request, std::function<void()> on_complete, std::vector<OwnedType> types = {})
      : request_(request), on_complete_(std::move(on_complete)), types_(std::move(types)) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) MpiPending::wait();
  }
  bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int flag = 0;
    MICS_MPI_CHECK(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE));
    if (flag) complete();
    return flag != 0;
  }
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    MICS_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    complete();
  }

 private:
  void complete() {
    request_ = MPI_REQUEST_NULL;
    if (on_complete_) on_complete_();
    types_.clear();
  }
  MPI_Request request_;
  std::function<void()> on_complete_;
  std::vector<OwnedType> types_;
};

// Two stages: the inter-node gather, then (started by whichever test()/wait() sees stage one end) the
// intra-node gather.
class HierarchicalPending final : public PendingCollective {
 public:
  HierarchicalPending(std::unique_ptr<PendingCollective> first, std::function<std::unique_ptr<PendingCollective>()> second)
      : current_(std::move(first)), start_second_(std::move(second)) {}
  ~HierarchicalPending() override { HierarchicalPending::wait(); }
  bool test() override {
    if (!current_->test()) return false;
    if (start_second_) {
      current_ = std::exchange(start_second_, nullptr)();
      return current_->test();
    }
    return true;
  }
  void wait() override {
    current_->wait();
    if (start_second_) {
      current_ = std::exchange(start_second_, nullptr)();
      current_->wait();
    }
  }

 private:
  std::unique_ptr<PendingCollective> current_;
  std::function<std::unique_ptr<PendingCollective>()> start_second_;
};

std::function<void()> average_step(void* recv, std::size_t count, DataType type, ReduceOp op, int ranks) {
  if (op != ReduceOp::average) return {};
  return [recv, count, type, ranks] { divide(recv, count, type, ranks); };
}

}  // namespace

MpiCollectives::MpiCollectives() {
  MICS_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type_));
  MICS_MPI_CHECK(MPI_Type_commit(&bf16_type_));
  MICS_MPI_CHECK(MPI_Op_create(&bf16_sum, 1, &bf16_sum_));
  MICS_MPI_CHECK(MPI_Op_create(&bf16_max, 1, &bf16_max_));
}

MpiCollectives::~MpiCollectives() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  MPI_Op_free(&bf16_max_);
  MPI_Op_free(&bf16_sum_);
  MPI_Type_free(&bf16_type_);
}

MPI_Datatype MpiCollectives::mpi_type(DataType type) const {
  switch (type) {
    case DataType::f32: return MPI_FLOAT;
    case DataType::bf16: return bf16_type_;
    case DataType::i32: return MPI_INT32_T;
    case DataType::i64: return MPI_INT64_T;
    case DataType::f64: return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiCollectives::mpi_op(DataType type, ReduceOp op) const {
  const bool is_max = op == ReduceOp::max;
  if (type == DataType::bf16) return is_max ? bf16_max_ : bf16_sum_;
  return is_max ? MPI_MAX : MPI_SUM;
}

// --- all-gather ----------------------------------------------------------------------------------

void MpiCollectives::all_gather(const void* send, void* recv, std::size_t count, DataType type, Communicator& comm) {
  const int n = int_count(count);
  const std::uint64_t bytes = ring_all_gather_bytes(count, size_of(type), comm.size());
  MICS_MPI_CHECK(MPI_Allgather(send, n, mpi_type(type), recv, n, mpi_type(type), comm.handle()));
  comm.record(bytes, bytes);
}

Request MpiCollectives::iall_gather(const void* send, void* recv, std::size_t count, DataType type,
                                    Communicator& comm) {
  const int n = int_count(count);
  const std::uint64_t bytes = ring_all_gather_bytes(count, size_of(type), comm.size());
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallgather(send, n, mpi_type(type), recv, n, mpi_type(type), comm.handle(), &request));
  comm.record(bytes, bytes);
  return Request(std::make_unique<MpiPending>(request, nullptr));
}

// Shard i of the output sits at i*c; this rank is shard j*L + l (j = inter rank, l = intra rank).
// Stage 1 gathers shards l, L+l, 2L+l, ... from the inter-node group straight into their slots (a
// receive type of c elements with extent L*c). Stage 2 gathers in place over the intra-node group with
// a type covering a rank's J slots (J blocks of c, pitch L*c, extent c), completing every slot.
void MpiCollectives::hierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                             Communicator& inter_node, Communicator& intra_node) {
  ihierarchical_all_gather(send, recv, count, type, inter_node, intra_node).wait();
}

Request MpiCollectives::ihierarchical_all_gather(const void* send, void* recv, std::size_t count, DataType type,
                                                 Communicator& inter_node, Communicator& intra_node) {
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
  record_hierarchical_all_gather(inter_node, intra_node, count, elem);

  auto first = std::make_unique<MpiPending>(inter_request, nullptr, std::move(inter_types));
  MPI_Comm intra = intra_node.handle();
  auto second = [=]() -> std::unique_ptr<PendingCollective> {
    std::vector<OwnedType> intra_types;
    intra_types.push_back(strided_type(base, elem, J, c, static_cast<std::size_t>(L) * count, count));
    MPI_Request intra_request = MPI_REQUEST_NULL;
    MICS_MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, 1, intra_types.front().get(), intra,
                                  &intra_request));
    return std::make_unique<MpiPending>(intra_request, nullptr, std::move(intra_types));
  };
  return Request(std::make_unique<HierarchicalPending>(std::move(first), std::move(second)));
}

// --- reductions ----------------------------------------------------------------------------------

void MpiCollectives::reduce_scatter(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                    Communicator& comm) {
  require_floating_for_average(type, op);
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const int n = int_count(count);
  int_count(count * static_cast<std::size_t>(comm.size()));
  MICS_MPI_CHECK(MPI_Reduce_scatter_block(send, recv, n, mpi_type(type), mpi_op(type, op), comm.handle()));
  if (op == ReduceOp::average) divide(recv, count, type, comm.size());
  const std::uint64_t bytes = ring_reduce_scatter_bytes(count, size_of(type), comm.size());
  comm.record(bytes, bytes);
}

Request MpiCollectives::ireduce_scatter(const void* send, void* recv, std::size_t count, DataType type,
                                        ReduceOp op, Communicator& comm) {
  require_floating_for_average(type, op);
  MICS_CHECK(send != recv, "reduce_scatter needs distinct input and output buffers");
  const int n = int_count(count);
  int_count(count * static_cast<std::size_t>(comm.size()));
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(
      MPI_Ireduce_scatter_block(send, recv, n, mpi_type(type), mpi_op(type, op), comm.handle(), &request));
  const std::uint64_t bytes = ring_reduce_scatter_bytes(count, size_of(type), comm.size());
  comm.record(bytes, bytes);
  return Request(std::make_unique<MpiPending>(request, average_step(recv, count, type, op, comm.size())));
}

void MpiCollectives::all_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                Communicator& comm) {
  require_floating_for_average(type, op);
  const int n = int_count(count);
  const void* source = send == recv ? MPI_IN_PLACE : send;
  MICS_MPI_CHECK(MPI_Allreduce(source, recv, n, mpi_type(type), mpi_op(type, op), comm.handle()));
  if (op == ReduceOp::average) divide(recv, count, type, comm.size());
  const std::uint64_t bytes = ring_all_reduce_bytes(count, size_of(type), comm.size());
  comm.record(bytes, bytes);
}

Request MpiCollectives::iall_reduce(const void* send, void* recv, std::size_t count, DataType type, ReduceOp op,
                                    Communicator& comm) {
  require_floating_for_average(type, op);
  const int n = int_count(count);
  const void* source = send == recv ? MPI_IN_PLACE : send;
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallreduce(source, recv, n, mpi_type(type), mpi_op(type, op), comm.handle(), &request));
  const std::uint64_t bytes = ring_all_reduce_bytes(count, size_of(type), comm.size());
  comm.record(bytes, bytes);
  return Request(std::make_unique<MpiPending>(request, average_step(recv, count, type, op, comm.size())));
}

// --- broadcast, barrier --------------------------------------------------------------------------


void MpiCollectives::broadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) {
  MICS_MPI_CHECK(MPI_Bcast(buffer, int_count(count), mpi_type(type), root, comm.handle()));
  record_broadcast(comm, count, type, root);
}

Request MpiCollectives::ibroadcast(void* buffer, std::size_t count, DataType type, int root, Communicator& comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Ibcast(buffer, int_count(count), mpi_type(type), root, comm.handle(), &request));
  record_broadcast(comm, count, type, root);
  return Request(std::make_unique<MpiPending>(request, nullptr));
}

void MpiCollectives::barrier(Communicator& comm) {
  MICS_MPI_CHECK(MPI_Barrier(comm.handle()));
  comm.record(0, 0);
}

Request MpiCollectives::ibarrier(Communicator& comm) {
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Ibarrier(comm.handle(), &request));
  comm.record(0, 0);
  return Request(std::make_unique<MpiPending>(request, nullptr));
}

}  // namespace mics::comm
