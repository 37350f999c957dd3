// The parallel plan: how a run is laid out, resolved once from the deck and the world, validated once,
// then handed typed to every consumer (topology, engine, checkpoints, trainer). ddp, zero3 and mics are
// only partition sizes of it:
//   ddp   p = 1      every rank holds all model states; one all-reduce of the gradient per step
//   zero3 p = world  one partition group; every collective spans the world, gathers flat
//   mics  p = partition_size (auto: ranks per node); two-hop gradient synchronization
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mics/config/options.hpp"
#include "mics/topology/topology.hpp"

namespace mics::topology {

struct ParallelPlan {
  config::Strategy strategy = config::Strategy::mics;
  Shape shape;                 // world n, nodes, ranks per node, p, r, J nodes spanned, L ranks per node in a group
  bool hierarchical = false;   // partition-group collectives in two stages (inter-node, then intra-node)
  bool gather_bf16 = false;    // gather bf16 copies of the parameters (masters stay fp32); only when p > 1
  int micro_batch = 1;         // B sequences per rank per micro-step
  int grad_accum = 1;          // micro-steps per optimizer step
  std::vector<std::string> notes;  // what the deck asked for that this plan does not use, for the log

  bool sharded() const { return shape.partition_size > 1; }
  bool replicated() const { return shape.replicas > 1; }
  std::int64_t global_batch() const {  // sequences per optimizer step
    return std::int64_t{micro_batch} * grad_accum * shape.world;
  }
  // One line: "mics p=2 r=2 (2 nodes x 2 ranks), all-gather flat in fp32, global batch 32 = 8 x 1 x 4 ranks"
  std::string describe() const;
};

// Pure (no MPI). ranks_per_node: the deck's topology.ranks_per_node, or what MPI detected.
// Errors (InputError, naming the deck keys and values; the same on every rank for the same inputs):
//   - world size not divisible by topology.ranks_per_node;
//   - parallel.partition_size larger than the world, not dividing it, spanning part of a node, or not
//     dividing ranks_per_node inside a node (validate_shape);
//   - train.micro_batch or train.grad_accum below 1.
// Notes (not errors): partition_size given to ddp or zero3; hierarchical = on for a group inside one node;
// gather_dtype = bf16 where nothing is gathered (p = 1).
ParallelPlan make_plan(const config::ParallelOptions& parallel, int micro_batch, int grad_accum, int world,
                       int ranks_per_node);

}  // namespace mics::topology
