// The step schedule: checked by replaying it against its contract, independently of the engine that
// executes it: parameters are gathered before use, gradients reduce-scattered once per unit per
// micro-step with at most one in flight, the replicas summed once per unit per step, p = 1 has none of
// the first hop; with recompute = blocks a block's recompute comes right before its backward, on the same
// gathered parameters (no gather in between, none more than without recompute).
#include "catch.hpp"
#include <map>
#include <set>
#include <vector>

#include "mics/engine/schedule.hpp"

using mics::engine::Op;
using mics::engine::ScheduleShape;
using Kind = Op::Kind;

namespace {

int count(const std::vector<Op>& ops, Kind kind) {
  int n = 0;
  for (const Op& op : ops) n += op.kind == kind;
  return n;
}

// Replays the ops, tracking what each slot holds and what is in flight; fails on any misuse.
void replay(const std::vector<Op>& ops, const ScheduleShape& shape) {
  const int units = shape.layers + 2;
  std::map<int, int> slot_unit;      // gather slot -> unit whose gather completed into it
  std::map<int, int> pending_gather; // slot -> unit being gathered
  int reduce_scatter_in_flight = -1;
  std::map<int, std::map<int, int>> reduce_scatters;  // micro -> unit -> count
  std::map<int, int> replica_sums;                    // unit -> count
  std::set<int> begun;                                // units with a gradient buffer this micro-step
  std::map<int, int> gathers_into;                    // slot -> gathers issued into it so far
  int recomputed_layer = -1, recomputed_slot = -1, recomputed_gathers = -1;  // the last recompute
  int micro = -1;
  bool optimizer = false;
  for (const Op& op : ops) {
    INFO("op " << mics::engine::to_string(op.kind) << " micro " << op.micro << " unit " << op.unit << " slot " << op.slot);
    switch (op.kind) {
      case Kind::load_batch:
        REQUIRE(op.micro == micro + 1);
        micro = op.micro;
        if (shape.sharded) begun.clear();  // p = 1 accumulates in the shard: begun once, at micro-step 0
        break;
      case Kind::gather:
        REQUIRE(shape.sharded);
        REQUIRE(pending_gather.empty());  // one gather in flight at a time
        pending_gather[op.slot] = op.unit;
        slot_unit.erase(op.slot);
        ++gathers_into[op.slot];
        break;
      case Kind::wait_gather:
        REQUIRE(pending_gather.count(op.slot) == 1);
        REQUIRE(pending_gather[op.slot] == op.unit);
        slot_unit[op.slot] = op.unit;
        pending_gather.erase(op.slot);
        break;
      case Kind::forward:
      case Kind::recompute:
      case Kind::backward:
        REQUIRE(op.micro == micro);
        if (shape.sharded) {
          REQUIRE(slot_unit.count(op.slot) == 1);
          REQUIRE(slot_unit[op.slot] == op.unit);  // the parameters this stage needs are there
        }
        if (op.kind == Kind::backward) REQUIRE(begun.count(op.unit) == 1);
        REQUIRE(op.stage.unit == op.unit);
        if (op.kind == Kind::recompute) {
          REQUIRE(shape.recompute == mics::config::Recompute::blocks);
          REQUIRE(op.stage.kind == mics::model::Stage::Kind::Block);
          recomputed_layer = op.stage.layer;
          recomputed_slot = op.slot;
          recomputed_gathers = gathers_into[op.slot];
        }
        if (op.kind == Kind::backward &&
            mics::model::needs_recompute(op.stage, shape.layers, shape.recompute)) {
          // Recomputed just before, from the same gather of the same slot.
          REQUIRE(recomputed_layer == op.stage.layer);
          REQUIRE(recomputed_slot == op.slot);
          REQUIRE(recomputed_gathers == gathers_into[op.slot]);
          recomputed_layer = -1;
        }
        break;
      case Kind::begin_gradient:
        REQUIRE(begun.count(op.unit) == 0);
        begun.insert(op.unit);
        break;
      case Kind::reduce_scatter:
        REQUIRE(shape.sharded);
        REQUIRE(reduce_scatter_in_flight == -1);  // one staging buffer
        reduce_scatter_in_flight = op.unit;
        ++reduce_scatters[op.micro][op.unit];
        break;
      case Kind::wait_reduce_scatter:
        REQUIRE(reduce_scatter_in_flight == op.unit);
        reduce_scatter_in_flight = -1;
        break;
      case Kind::sum_over_replicas:
        REQUIRE(shape.replicated);
        REQUIRE(op.micro == shape.micro_steps - 1);  // the last micro-step only
        REQUIRE(reduce_scatter_in_flight != op.unit);
        ++replica_sums[op.unit];
        break;
      case Kind::read_loss: REQUIRE(reduce_scatter_in_flight == -1); break;
      case Kind::wait_replicas: REQUIRE(micro == shape.micro_steps - 1); break;
      case Kind::optimizer: optimizer = true; break;
    }
  }
  CHECK(optimizer);
  CHECK(micro == shape.micro_steps - 1);
  CHECK(pending_gather.empty());
  for (int m = 0; m < shape.micro_steps; ++m)
    for (int u = 0; u < units; ++u) CHECK(reduce_scatters[m][u] == (shape.sharded ? 1 : 0));
  for (int u = 0; u < units; ++u) CHECK(replica_sums[u] == (shape.replicated ? 1 : 0));
}

}  // namespace

TEST_CASE("every layout's step schedule keeps its contract", "[engine][schedule]") {
  for (int layers : {1, 2, 5}) {
    for (bool sharded : {false, true}) {
      for (bool replicated : {false, true}) {
        for (int micro_steps : {1, 2, 4}) {
          const ScheduleShape shape{layers, sharded, replicated, micro_steps};
          INFO("layers " << layers << " sharded " << sharded << " replicated " << replicated << " micro " << micro_steps);
          const std::vector<Op> ops = mics::engine::training_step(shape);
          replay(ops, shape);
          const int units = layers + 2;
          // Stages: per micro-step L+3 forward (the head reuses unit 0) and L+3 backward.
          CHECK(count(ops, Kind::forward) == micro_steps * (layers + 3));
          CHECK(count(ops, Kind::backward) == micro_steps * (layers + 3));
          CHECK(count(ops, Kind::read_loss) == micro_steps);
          if (!sharded) {
            CHECK(count(ops, Kind::gather) == 0);
            CHECK(count(ops, Kind::begin_gradient) == units);  // the accumulator, zeroed at micro-step 0 only
          } else {
            // Each micro-step runs 2L+5 consecutive unit runs; a gather is left out only when its slot
            // still holds the unit, so there are fewer gathers than runs but at least one per unit.
            CHECK(count(ops, Kind::gather) <= micro_steps * (2 * layers + 5));
            CHECK(count(ops, Kind::gather) >= micro_steps * units);
            CHECK(count(ops, Kind::begin_gradient) == micro_steps * units);
          }
        }
      }
    }
  }
}

TEST_CASE("evaluation gathers and runs forward only", "[engine][schedule]") {
  const ScheduleShape shape{3, true, true, 4};
  const std::vector<Op> ops = mics::engine::evaluation(shape, 2);
  CHECK(count(ops, Kind::backward) == 0);
  CHECK(count(ops, Kind::reduce_scatter) == 0);
  CHECK(count(ops, Kind::sum_over_replicas) == 0);
  CHECK(count(ops, Kind::optimizer) == 0);
  CHECK(count(ops, Kind::forward) == 2 * (3 + 3));
  CHECK(count(ops, Kind::read_loss) == 2);
  CHECK(count(ops, Kind::gather) >= 3 + 2);
}

TEST_CASE("recompute = blocks adds one recompute per block but the last, and not a single gather",
          "[engine][schedule][recompute]") {
  for (int layers : {1, 2, 5}) {
    for (bool sharded : {false, true}) {
      for (int micro_steps : {1, 3}) {
        const ScheduleShape keep{layers, sharded, true, micro_steps};
        ScheduleShape recompute = keep;
        recompute.recompute = mics::config::Recompute::blocks;
        INFO("layers " << layers << " sharded " << sharded << " micro " << micro_steps);
        const std::vector<Op> a = mics::engine::training_step(keep), b = mics::engine::training_step(recompute);
        replay(a, keep);
        replay(b, recompute);
        CHECK(count(a, Kind::recompute) == 0);
        CHECK(count(b, Kind::recompute) == micro_steps * (layers - 1));
        CHECK(count(b, Kind::gather) == count(a, Kind::gather));
        // Apart from the recomputes, the same operations in the same order.
        std::vector<Op> without;
        for (const Op& op : b)
          if (op.kind != Kind::recompute) without.push_back(op);
        REQUIRE(without.size() == a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
          CHECK(without[i].kind == a[i].kind);
          CHECK(without[i].unit == a[i].unit);
          CHECK(without[i].slot == a[i].slot);
        }
      }
    }
  }
  // Validation has no backward: nothing to recompute.
  ScheduleShape shape{3, true, true, 1};
  shape.recompute = mics::config::Recompute::blocks;
  CHECK(count(mics::engine::evaluation(shape, 2), Kind::recompute) == 0);
}
