// The engine's view of its MiCS groups (docs/algorithms.md#groups): parameter all-gather and gradient
// reduce-scatter inside the partition group (both in two stages when the plan says so), the
// second hop of the gradient synchronization across the replication group, and the host scalars the
// optimizer and the metrics reduce.
#pragma once
#include <span>

#include "mics/comm/collectives.hpp"
#include "mics/topology/plan.hpp"
#include "mics/topology/topology.hpp"

namespace mics::comm {

class MicsGroups {
 public:
  MicsGroups(Collectives& collectives, const topology::Topology& topology, const topology::ParallelPlan& plan)
      : collectives_(collectives), topology_(topology), hierarchical_(plan.hierarchical) {}

  bool hierarchical() const { return hierarchical_; }
  Collectives& collectives() { return collectives_; }

  // shard: this rank's c elements; full: p * c elements, shard i at i * c.
  template <class T>
  Request gather(std::span<const std::type_identity_t<T>> shard, std::span<T> full) {
    if (hierarchical_)
      return collectives_.hierarchical_all_gather<T>(shard, full, topology_.inter_node(), topology_.intra_node());
    return collectives_.all_gather<T>(shard, full, topology_.partition());
  }
  // full: p * c elements of every rank; shard: the summed block of this rank. Hierarchical: intra-node
  // first, then inter-node (docs/algorithms.md#hierarchical-reduce-scatter), on communicators of its own
  // (Topology::intra_node_reduce) so it never interleaves with a gather's stages on MPI. At most one
  // gather and one reduce-scatter may be in flight (the engine's schedule keeps to that).
  Request reduce_scatter(std::span<const float> full, std::span<float> shard) {
    if (hierarchical_)
      return collectives_.hierarchical_reduce_scatter<float>(full, shard, ReduceOp::sum, topology_.inter_node_reduce(),
                                                             topology_.intra_node_reduce());
    return collectives_.reduce_scatter<float>(full, shard, ReduceOp::sum, topology_.partition());
  }
  // In place across the r replicas of this shard (the second hop).
  Request sum_over_replicas(std::span<float> shard) {
    return collectives_.all_reduce<float>(shard, ReduceOp::sum, topology_.replication());
  }
  // Host scalars: over the partition group (norms of disjoint shards) and over the world (losses).
  void sum_over_partition(std::span<double> values) {
    collectives_.host_all_reduce<double>(values, ReduceOp::sum, topology_.partition());
  }
  void sum_over_world(std::span<double> values) {
    collectives_.host_all_reduce<double>(values, ReduceOp::sum, topology_.world());
  }
  void progress() { collectives_.progress(); }

 private:
  Collectives& collectives_;
  const topology::Topology& topology_;
  bool hierarchical_;
};

}  // namespace mics::comm
