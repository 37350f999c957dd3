#include "mics/comm/agreement.hpp"

namespace mics::comm {

std::string broadcast_string(MPI_Comm comm, int root, std::string text) {
  int length = static_cast<int>(text.size());
  MICS_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, root, comm));
  text.resize(static_cast<std::size_t>(length));
  MICS_MPI_CHECK(MPI_Bcast(text.data(), length, MPI_CHAR, root, comm));
  return text;
}

std::optional<ErrorReport> first_error(MPI_Comm comm, const std::optional<ErrorReport>& local) {
  int rank = 0, size = 1;
  MICS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MICS_MPI_CHECK(MPI_Comm_size(comm, &size));
  const int mine = local ? rank : size;
  int first = size;
  MICS_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return std::nullopt;
  int kind = rank == first ? static_cast<int>(local->kind) : 0;
  MICS_MPI_CHECK(MPI_Bcast(&kind, 1, MPI_INT, first, comm));
  ErrorReport report;
  report.kind = static_cast<ErrorKind>(kind);
  report.message = broadcast_string(comm, first, rank == first ? local->message : std::string());
  return report;
}

std::string first_error(MPI_Comm comm, const std::string& local_error) {
  std::optional<ErrorReport> local;
  if (!local_error.empty()) local = ErrorReport{ErrorKind::failure, local_error};
  const std::optional<ErrorReport> agreed = first_error(comm, local);
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
