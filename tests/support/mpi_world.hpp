// This process's rank and the size of MPI_COMM_WORLD, for the MPI tests.
#pragma once
#include <mpi.h>

#include "mics/topology/topology.hpp"

namespace mics::test {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// The groups of MPI_COMM_WORLD as `ranks_per_node` emulated ranks per node with partition size p
// (0: ranks per node). Throws InputError for a layout the world does not allow.
inline topology::Topology topology(int ranks_per_node, int p) {
  return topology::Topology::create(topology::validate_shape(world_size(), ranks_per_node, p));
}

}  // namespace mics::test
