#include "mics/topology/plan.hpp"

#include <sstream>

#include "mics/util/error.hpp"

namespace mics::topology {

ParallelPlan make_plan(const config::ParallelOptions& parallel, int micro_batch, int grad_accum, int world,
                       int ranks_per_node) {
  using config::Strategy;
  ParallelPlan plan;
  plan.strategy = parallel.strategy;
  if (micro_batch < 1) throw InputError("train.micro_batch = " + std::to_string(micro_batch) + " must be at least 1");
  if (grad_accum < 1) throw InputError("train.grad_accum = " + std::to_string(grad_accum) + " must be at least 1");
  plan.micro_batch = micro_batch;
  plan.grad_accum = grad_accum;

  int p = parallel.partition_size;  // 0: ranks per node
  if (parallel.strategy != Strategy::mics) {
    if (parallel.partition_size_set)
      plan.notes.push_back("parallel.partition_size is ignored by strategy " +
                           std::string(config::to_string(parallel.strategy)));
    p = parallel.strategy == Strategy::ddp ? 1 : world;
  }
  plan.shape = validate_shape(world, ranks_per_node, p);

  // ZeRO-3 is the flat baseline; MiCS goes hierarchical when its group spans nodes (auto) or when asked.
  const bool spans = plan.shape.spans_nodes();
  if (parallel.strategy == Strategy::mics) {
    plan.hierarchical = spans && parallel.hierarchical != config::Switch::off;
    if (parallel.hierarchical == config::Switch::on && !spans)
      plan.notes.push_back(
          "parallel.hierarchical = on, but the partition group lies inside one node: the flat all-gather "
          "already stays on the node");
  } else if (parallel.hierarchical == config::Switch::on) {
    plan.notes.push_back("parallel.hierarchical = on is ignored by strategy " +
                         std::string(config::to_string(parallel.strategy)) + " (it gathers flat)");
  }

  plan.gather_bf16 = parallel.gather_dtype == config::GatherDtype::bf16 && plan.sharded();
  if (parallel.gather_dtype == config::GatherDtype::bf16 && !plan.sharded())
    plan.notes.push_back("parallel.gather_dtype = bf16 has no effect with p = 1: nothing is gathered");
  return plan;
}

std::string ParallelPlan::describe() const {
  std::ostringstream os;
  os << config::to_string(strategy) << " p=" << shape.partition_size << " r=" << shape.replicas << " ("
     << shape.nodes << " node(s) x " << shape.ranks_per_node << " ranks)";
  if (sharded())
    os << ", all-gather " << (hierarchical ? "hierarchical" : "flat") << " in " << (gather_bf16 ? "bf16" : "fp32");
  os << ", global batch " << global_batch() << " sequences = micro_batch " << micro_batch << " x grad_accum "
     << grad_accum << " x " << shape.world << " ranks";
  return os.str();
}

}  // namespace mics::topology
