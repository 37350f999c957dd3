#include "mics/comm/agreement.hpp"

#include "mics/util/error.hpp"

namespace mics::comm {

std::string broadcast_string(MPI_Comm comm, int root, std::string text) {
  int length = static_cast<int>(text.size());
  MICS_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, root, comm));
  text.resize(static_cast<std::size_t>(length));
  MICS_MPI_CHECK(MPI_Bcast(text.data(), length, MPI_CHAR, root, comm));
  return text;
}

std::string first_error(MPI_Comm comm, const std::string& local_error) {
  int rank = 0, size = 1;
  MICS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MICS_MPI_CHECK(MPI_Comm_size(comm, &size));
  const int mine = local_error.empty() ? size : rank;
  int first = size;
  MICS_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return {};
  return broadcast_string(comm, first, rank == first ? local_error : std::string());
}

}  // namespace mics::comm
