#include "mics/comm/agreement.hpp"

#include "mics/comm/mpi_transport.hpp"

namespace mics::comm {

namespace {

// Every agreement is a few small collectives; `wait` completes each (MPI_Wait, or a bounded wait).
using Wait = std::function<void(MPI_Request&)>;

std::string broadcast_string_with(MPI_Comm comm, int root, std::string text, const Wait& wait) {
  int length = static_cast<int>(text.size());
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Ibcast(&length, 1, MPI_INT, root, comm, &request));
  wait(request);
  text.resize(static_cast<std::size_t>(length));
  MICS_MPI_CHECK(MPI_Ibcast(text.data(), length, MPI_CHAR, root, comm, &request));
  wait(request);
  return text;
}

std::optional<ErrorReport> first_error_with(MPI_Comm comm, const std::optional<ErrorReport>& local, const Wait& wait) {
  int rank = 0, size = 1;
  MICS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MICS_MPI_CHECK(MPI_Comm_size(comm, &size));
  const int mine = local ? rank : size;
  int first = size;
  MPI_Request request = MPI_REQUEST_NULL;
  MICS_MPI_CHECK(MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm, &request));
  wait(request);
  if (first == size) return std::nullopt;
  int kind = rank == first ? static_cast<int>(local->kind) : 0;
  MICS_MPI_CHECK(MPI_Ibcast(&kind, 1, MPI_INT, first, comm, &request));
  wait(request);
  ErrorReport report;
  report.kind = static_cast<ErrorKind>(kind);
  report.message = broadcast_string_with(comm, first, rank == first ? local->message : std::string(), wait);
  return report;
}

void wait_forever(MPI_Request& request) { MICS_MPI_CHECK(MPI_Wait(&request, MPI_STATUS_IGNORE)); }

Wait bounded(const Group& group, const Patience& patience) {
  return [&group, &patience](MPI_Request& request) {
    wait_or_give_up(request, patience.limit, patience.what.c_str(), group, patience.progress);
  };
}

std::optional<ErrorReport> as_report(const std::string& local_error) {
  if (local_error.empty()) return std::nullopt;
  return ErrorReport{ErrorKind::failure, local_error};
}

}  // namespace

std::string broadcast_string(MPI_Comm comm, int root, std::string text) {
  return broadcast_string_with(comm, root, std::move(text), wait_forever);
}

std::string broadcast_string(const Group& group, int root, std::string text, const Patience& patience) {
  return broadcast_string_with(group.handle(), root, std::move(text), bounded(group, patience));
}

std::optional<ErrorReport> first_error(MPI_Comm comm, const std::optional<ErrorReport>& local) {
  return first_error_with(comm, local, wait_forever);
}

std::string first_error(MPI_Comm comm, const std::string& local_error) {
  const std::optional<ErrorReport> agreed = first_error_with(comm, as_report(local_error), wait_forever);
  return agreed ? agreed->message : std::string();
}

std::string first_error(const Group& group, const std::string& local_error, const Patience& patience) {
  const std::optional<ErrorReport> agreed = first_error_with(group.handle(), as_report(local_error), bounded(group, patience));
  return agreed ? agreed->message : std::string();
}

void agree(MPI_Comm comm, const std::function<void()>& work) {
  std::optional<ErrorReport> local;
  try {
    work();
  } catch (const Error& e) {
    local = ErrorReport{e.kind(), e.what()};
  }
  if (const std::optional<ErrorReport> agreed = first_error(comm, local))
    throw_error(agreed->kind, agreed->message, ErrorScope::all_ranks);
}

}  // namespace mics::comm
