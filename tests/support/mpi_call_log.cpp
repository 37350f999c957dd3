#include "mpi_call_log.hpp"

namespace mics::test {

namespace {
std::vector<MpiCall>& log() {
  static std::vector<MpiCall> calls;  // test-only observation of one process's MPI calls
  return calls;
}
int size_of(MPI_Comm comm) {
  int n = 0;
  PMPI_Comm_size(comm, &n);
  return n;
}
std::uint64_t bytes_of(int count, MPI_Datatype type) {
  int size = 0;
  PMPI_Type_size(type, &size);
  return static_cast<std::uint64_t>(count) * static_cast<std::uint64_t>(size);
}
void add(MpiCall::Op op, MPI_Comm comm, std::uint64_t bytes, bool root = false) {
  log().push_back({op, comm, size_of(comm), bytes, root});
}
// An in-place all-gather contributes the rank's block of the receive buffer.
std::uint64_t gather_bytes(const void* send, int sendcount, MPI_Datatype sendtype, int recvcount, MPI_Datatype recvtype) {
  return send == MPI_IN_PLACE ? bytes_of(recvcount, recvtype) : bytes_of(sendcount, sendtype);
}
}  // namespace

std::vector<MpiCall> take_mpi_calls() {
  std::vector<MpiCall> calls;
  calls.swap(log());
  return calls;
}

std::uint64_t ring_bytes_sent(const MpiCall& call) {
  const auto n = static_cast<std::uint64_t>(call.ranks);
  switch (call.op) {
    case MpiCall::Op::all_gather:
    case MpiCall::Op::reduce_scatter: return (n - 1) * call.bytes;
    case MpiCall::Op::all_reduce: return 2 * (n - 1) * call.bytes / n;
    case MpiCall::Op::broadcast: return call.root && n > 1 ? call.bytes : 0;
  }
  return 0;
}

}  // namespace mics::test

using mics::test::MpiCall;

extern "C" {

int MPI_Allgather(const void* s, int sc, MPI_Datatype st, void* r, int rc, MPI_Datatype rt, MPI_Comm c) {
  mics::test::add(MpiCall::Op::all_gather, c, mics::test::gather_bytes(s, sc, st, rc, rt));
  return PMPI_Allgather(s, sc, st, r, rc, rt, c);
}
int MPI_Iallgather(const void* s, int sc, MPI_Datatype st, void* r, int rc, MPI_Datatype rt, MPI_Comm c,
                   MPI_Request* q) {
  mics::test::add(MpiCall::Op::all_gather, c, mics::test::gather_bytes(s, sc, st, rc, rt));
  return PMPI_Iallgather(s, sc, st, r, rc, rt, c, q);
}
int MPI_Reduce_scatter_block(const void* s, void* r, int rc, MPI_Datatype t, MPI_Op o, MPI_Comm c) {
  mics::test::add(MpiCall::Op::reduce_scatter, c, mics::test::bytes_of(rc, t));
  return PMPI_Reduce_scatter_block(s, r, rc, t, o, c);
}
int MPI_Ireduce_scatter_block(const void* s, void* r, int rc, MPI_Datatype t, MPI_Op o, MPI_Comm c, MPI_Request* q) {
  mics::test::add(MpiCall::Op::reduce_scatter, c, mics::test::bytes_of(rc, t));
  return PMPI_Ireduce_scatter_block(s, r, rc, t, o, c, q);
}
int MPI_Allreduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c) {
  mics::test::add(MpiCall::Op::all_reduce, c, mics::test::bytes_of(n, t));
  return PMPI_Allreduce(s, r, n, t, o, c);
}
int MPI_Iallreduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op o, MPI_Comm c, MPI_Request* q) {
  mics::test::add(MpiCall::Op::all_reduce, c, mics::test::bytes_of(n, t));
  return PMPI_Iallreduce(s, r, n, t, o, c, q);
}
int MPI_Ibcast(void* b, int n, MPI_Datatype t, int root, MPI_Comm c, MPI_Request* q) {
  int me = 0;
  PMPI_Comm_rank(c, &me);
  mics::test::add(MpiCall::Op::broadcast, c, mics::test::bytes_of(n, t), me == root);
  return PMPI_Ibcast(b, n, t, root, c, q);
}

}  // extern "C"
