// The engine's view of its MiCS groups: parameter all-gather and gradient reduce-scatter inside the
// partition group, gradient all-reduce across the replication group.
#pragma once
#include <span>

#include "mics/comm/collectives.hpp"
#include "mics/topology/topology.hpp"

namespace mics::comm {

class PartitionGroup {
 public:
  // hierarchical: use the two-stage all-gather when the partition group spans nodes (ignored inside a
  // node, where the flat gather already stays on the node).
  PartitionGroup(Collectives& collectives, topology::Topology& topology, bool hierarchical)
      : collectives_(collectives), topology_(topology),
        hierarchical_(hierarchical && topology.shape().spans_nodes()) {}

  bool hierarchical() const { return hierarchical_; }
  int size() const { return topology_.partition().size(); }
  int rank() const { return topology_.partition().rank(); }

  // shard: this rank's c elements; full: p * c elements, shard i at i * c.
  template <class T>
  void all_gather(std::span<const std::type_identity_t<T>> shard, std::span<T> full) {
    if (hierarchical_) {
      comm::hierarchical_all_gather<T>(collectives_, shard, full, topology_.inter_node(), topology_.intra_node());
    } else {
      comm::all_gather<T>(collectives_, shard, full, topology_.partition());
    }
  }
  template <class T>
  Request iall_gather(std::span<const std::type_identity_t<T>> shard, std::span<T> full) {
    if (hierarchical_) {
      return comm::ihierarchical_all_gather<T>(collectives_, shard, full, topology_.inter_node(),
                                               topology_.intra_node());
    }
    return comm::iall_gather<T>(collectives_, shard, full, topology_.partition());
  }
  // full: p * c elements of every rank; shard: the reduced block of this rank.
  template <class T>
  void reduce_scatter(std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op) {
    comm::reduce_scatter<T>(collectives_, full, shard, op, topology_.partition());
  }
  template <class T>
  Request ireduce_scatter(std::span<const std::type_identity_t<T>> full, std::span<T> shard, ReduceOp op) {
    return comm::ireduce_scatter<T>(collectives_, full, shard, op, topology_.partition());
  }
  // In place across the r replicas of this shard (the second hop of the gradient synchronization).
  template <class T>
  void all_reduce_replicas(std::span<T> shard, ReduceOp op) {
    comm::all_reduce<T>(collectives_, shard, op, topology_.replication());
  }
  template <class T>
  Request iall_reduce_replicas(std::span<T> shard, ReduceOp op) {
    return comm::iall_reduce<T>(collectives_, shard, op, topology_.replication());
  }
  // In place over the partition group (gradient norm of the shards, overflow flags).
  template <class T>
  void all_reduce_partition(std::span<T> values, ReduceOp op) {
    comm::all_reduce<T>(collectives_, values, op, topology_.partition());
  }

 private:
  Collectives& collectives_;
  topology::Topology& topology_;
  bool hierarchical_;
};

}  // namespace mics::comm
