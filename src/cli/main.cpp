#include <mpi.h>
#include <cstdio>
#include "mics/log/log.hpp"
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  mics::log::init(rank);
  MICS_LOG(info) << "mics skeleton";
  MPI_Finalize();
  return 0;
}
