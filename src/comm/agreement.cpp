#include "mics/comm/agreement.hpp"

#include "mics/util/error.hpp"

namespace mics::comm {

std::string first_error(MPI_Comm comm, const std::string& local_error) {
  int rank = 0, size = 1;
  MICS_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MICS_MPI_CHECK(MPI_Comm_size(comm, &size));
  const int mine = local_error.empty() ? size : rank;
  int first = size;
  MICS_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) return {};
  std::string message = rank == first ? local_error : std::string();
  int length = static_cast<int>(message.size());
  MICS_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, first, comm));
  message.resize(static_cast<std::size_t>(length));
  MICS_MPI_CHECK(MPI_Bcast(message.data(), length, MPI_CHAR, first, comm));
  return message;
}

}  // namespace mics::comm
