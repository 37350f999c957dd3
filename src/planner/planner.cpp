#include "mics/planner/planner.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "mics/util/error.hpp"

namespace mics::planner {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / kGiB);
  return buf;
}

// The cost of the collectives of one layout on one piece of hardware.
class Collectives {
 public:
  Collectives(const Hardware& h, const topology::ParallelPlan& plan) : h_(h), s_(plan.shape) {}

  // A ring over groups of `size` members spaced `stride` ranks apart: its per-step latency and bandwidth.
  Link link(int size, int stride) const {
    const int senders = off_node_senders(s_.world, s_.ranks_per_node, size, stride);
    if (senders == 0) return h_.intra;
    return {std::max(h_.inter.alpha, h_.intra.alpha), h_.inter.bandwidth / senders};
  }
  bool spans(int size, int stride) const {
    return off_node_senders(s_.world, s_.ranks_per_node, size, stride) > 0;
  }

  // Flat all-gather over the partition group, c elements of `elem` bytes per rank.
  double all_gather(double c, double elem) const {
    const int p = s_.partition_size;
    const Link l = link(p, 1);
    if (h_.algorithms == Algorithms::libnbc && spans(p, 1)) {
      // Linear: each member sends its shard to every other; a node's L members send L(p-L) shards out.
      const int L = std::min(p, s_.ranks_per_node);
      return (p - 1) * l.alpha + L * (p - L) * c * elem / h_.inter.bandwidth;
    }
    return (p - 1) * (l.alpha + c * elem / l.bandwidth);
  }
  // Hierarchical: the inter-node stage (J members, L groups per node at once), then the intra-node one.
  double hierarchical_all_gather(double c, double elem) const {
    const int J = s_.nodes_per_partition, L = s_.ranks_per_node_in_partition;
    const Link inter = link(J, L), intra = link(L, 1);
    return (J - 1) * (inter.alpha + c * elem / inter.bandwidth) + (L - 1) * (intra.alpha + J * c * elem / intra.bandwidth);
  }
  // Hierarchical (the mirror of the gather): J reduce-scatters inside the node, each of L members' rows of
  // c, then one among the J ranks with the same local index: L-1 intra-node steps per row, J-1 inter-node.
  double hierarchical_reduce_scatter(double c) const {
    const int J = s_.nodes_per_partition, L = s_.ranks_per_node_in_partition;
    const Link inter = link(J, L), intra = link(L, 1);
    const double intra_stage = J * (L - 1) * (intra.alpha + c * 4 / intra.bandwidth);
    if (h_.algorithms == Algorithms::libnbc) {
      // Each of the L inter-node groups reduces its J*c intermediate to a root (binomial rounds), which
      // then scatters the J-1 shards that belong elsewhere; the L groups share the node's link.
      const double rounds = std::ceil(std::log2(static_cast<double>(J)));
      return intra_stage + rounds * (inter.alpha + J * c * 4 / inter.bandwidth) + inter.alpha +
             (J - 1) * c * 4 / inter.bandwidth;
    }
    return intra_stage + (J - 1) * (inter.alpha + c * 4 / inter.bandwidth);
  }
  double reduce_scatter(double c) const {
    const int p = s_.partition_size;
    const Link l = link(p, 1);
    if (h_.algorithms == Algorithms::libnbc && spans(p, 1)) {
      // A binomial reduction of the whole vector to one rank (one full vector per inter-node round),
      // then a linear scatter of the shards that live on other nodes.
      const int L = std::min(p, s_.ranks_per_node);
      const int nodes = p / L;
      const double rounds = std::ceil(std::log2(static_cast<double>(nodes)));
      return rounds * (l.alpha + p * c * 4 / h_.inter.bandwidth) + l.alpha + (p - L) * c * 4 / h_.inter.bandwidth;
    }
    return (p - 1) * (l.alpha + c * 4 / l.bandwidth);
  }
  // Ring all-reduce of n elements (fp32) over the replication group.
  double replica_all_reduce(double n) const {
    const int r = s_.replicas, p = s_.partition_size;
    const Link l = link(r, p);
    return 2.0 * (r - 1) * (l.alpha + n * 4 / r / l.bandwidth);
  }
  // The gradient norm's scalar all-reduce over the partition group.
  double norm_all_reduce() const {
    const int p = s_.partition_size;
    return p > 1 ? 2.0 * (p - 1) * link(p, 1).alpha : 0.0;
  }

 private:
  const Hardware& h_;
  topology::Shape s_;
};

}  // namespace

double activation_bytes(const model::GptShape& shape, int micro_batch, int seq_len, Recompute recompute) {
  return static_cast<double>(model::Gpt::activation_bytes(shape, micro_batch, seq_len, recompute));
}

MemoryPlan plan_memory(const Hardware& h, const model::GptShape& shape, int seq_len,
                       const topology::ParallelPlan& plan, Recompute recompute) {
  MemoryPlan m;
  // The engine's own memory plan, activations included (what `mics train` logs before allocating).
  m.engine = engine::expected_memory(model::ParamLayout(shape), plan.shape.partition_size, plan.gather_bf16,
                                     {plan.micro_batch, seq_len, recompute});
  m.activations = static_cast<double>(m.engine.activations);
  m.reserve = h.reserve_bytes;
  m.total = static_cast<double>(m.engine.total()) + m.reserve;
  m.capacity = h.memory_bytes;
  m.fits = m.total <= m.capacity;
  if (!m.fits) {
    const std::array<std::pair<const char*, double>, 5> terms{{
        {"model states", static_cast<double>(m.engine.model_states)},
        {"gathered working set", static_cast<double>(m.engine.gathered)},
        {"gradient buffers", static_cast<double>(m.engine.gradients + m.engine.staging)},
        {"activations", m.activations},
        {"runtime reserve", m.reserve},
    }};
    const auto largest = std::max_element(terms.begin(), terms.end(),
                                          [](const auto& a, const auto& b) { return a.second < b.second; });
    m.verdict = "needs " + gib(m.total) + " of " + gib(m.capacity) + ", over by " + gib(m.total - m.capacity) +
                "; largest term " + largest->first + " " + gib(largest->second);
  }
  return m;
}

double stage_flops(const model::GptShape& shape, int seq_len, double tokens, const model::Stage& stage,
                   bool backward, Recompute recompute) {
  const double C = shape.channels;
  double forward = 0;
  switch (stage.kind) {
    case model::Stage::Kind::Block:
      forward = tokens * (2 * 12 * C * C + 2 * C * seq_len);  // 12C^2 weights, attention scores and their use
      break;
    case model::Stage::Kind::Head:
      forward = tokens * 2 * C * shape.padded_vocab;
      break;
    case model::Stage::Kind::Embed:
    case model::Stage::Kind::FinalNorm:
      forward = 0;  // no matrix products
      break;
  }
  if (!backward) return forward;
  const bool recomputed = recompute == Recompute::blocks && stage.kind == model::Stage::Kind::Block;
  return 2 * forward + (recomputed ? forward : 0);
}

TimePlan plan_time(const Hardware& h, const model::GptShape& shape, int seq_len, const topology::ParallelPlan& plan,
                   Recompute recompute) {
  const model::ParamLayout layout(shape);
  const topology::Shape& s = plan.shape;
  const auto p = static_cast<std::uint64_t>(s.partition_size);
  std::vector<double> shard;  // c_u: elements of a unit's shard (the whole unit when p = 1)
  double total_shard = 0;
  for (const model::UnitInfo& u : layout.units()) {
    shard.push_back(static_cast<double>((u.numel + p - 1) / p));
    total_shard += shard.back();
  }
  const Collectives cost(h, plan);
  const double elem = plan.gather_bf16 ? 2 : 4;
  const bool hierarchical = plan.hierarchical && s.spans_nodes();
  const double tokens = static_cast<double>(plan.micro_batch) * seq_len;

  engine::ScheduleShape schedule;
  schedule.layers = shape.layers;
  schedule.sharded = plan.sharded();
  schedule.replicated = plan.replicated();
  schedule.micro_steps = plan.grad_accum;
  schedule.recompute = recompute;  // the list then holds a recompute before each block's backward

  TimePlan t;
  double now = 0;        // the compute stream
  double queue = 0;      // the communication queue (collectives run one after another, in issue order)
  std::array<double, 2> gathered{0, 0};
  double reduce_scattered = 0, replicas_done = 0;
  auto enqueue = [&](double duration) {
    queue = std::max(queue, now) + duration;
    return queue;
  };
  for (const engine::Op& op : engine::training_step(schedule)) {
    const double c = op.unit >= 0 ? shard[static_cast<std::size_t>(op.unit)] : 0;
    const auto ci = static_cast<std::uint64_t>(c);
    switch (op.kind) {
      case engine::Op::Kind::gather: {
        const double d = hierarchical ? cost.hierarchical_all_gather(c, elem) : cost.all_gather(c, elem);
        gathered[static_cast<std::size_t>(op.slot)] = enqueue(d);
        t.gather += d;
        ++t.gathers;
        t.gathered_shard_elements += ci;
        if (hierarchical) {
          t.bytes_inter_node += static_cast<double>((s.nodes_per_partition - 1) * ci) * elem;
          t.bytes_intra_node +=
              static_cast<double>((s.ranks_per_node_in_partition - 1) * s.nodes_per_partition * ci) * elem;
        } else {
          t.bytes_partition += static_cast<double>((p - 1) * ci) * elem;
        }
        break;
      }
      case engine::Op::Kind::wait_gather:
        now = std::max(now, gathered[static_cast<std::size_t>(op.slot)]);
        break;
      case engine::Op::Kind::forward:
      case engine::Op::Kind::recompute:
      case engine::Op::Kind::backward: {
        // A recompute is its stage's forward again: costed where the schedule puts it, not inside the backward.
        const double d = stage_flops(shape, seq_len, tokens, op.stage, op.kind == engine::Op::Kind::backward,
                                     Recompute::none) /
                         h.flop_rate;
        now += d;
        t.compute += d;
        break;
      }
      case engine::Op::Kind::reduce_scatter: {
        // parallel.hierarchical selects both halves, as engine::MicsGroups does.
        const double d = hierarchical ? cost.hierarchical_reduce_scatter(c) : cost.reduce_scatter(c);
        reduce_scattered = enqueue(d);
        t.reduce_scatter += d;
        ++t.reduce_scatters;
        if (hierarchical) {
          const auto J = static_cast<std::uint64_t>(s.nodes_per_partition);
          const auto L = static_cast<std::uint64_t>(s.ranks_per_node_in_partition);
          t.bytes_intra_node += static_cast<double>(J * (L - 1) * ci * 4);
          t.bytes_inter_node += static_cast<double>((J - 1) * ci * 4);
        } else {
          t.bytes_partition += static_cast<double>((p - 1) * ci * 4);
        }
        break;
      }
      case engine::Op::Kind::wait_reduce_scatter:
        now = std::max(now, reduce_scattered);
        break;
      case engine::Op::Kind::sum_over_replicas: {
        const double d = cost.replica_all_reduce(c);
        replicas_done = enqueue(d);
        t.replicas += d;
        const auto r = static_cast<std::uint64_t>(s.replicas);
        t.bytes_replication += static_cast<double>(2 * (r - 1) * ci * 4 / r);
        break;
      }
      case engine::Op::Kind::wait_replicas:
        now = std::max(now, replicas_done);
        break;
      case engine::Op::Kind::optimizer: {
        // AdamW streams master, m, v and the gradient in and master, m, v out: 28 bytes per element (and
        // the bf16 copies for the gathers are refreshed: 6 more).
        const double bytes = total_shard * (plan.gather_bf16 ? 34 : 28);
        t.optimizer = bytes / h.memory_bandwidth + cost.norm_all_reduce();
        now += t.optimizer;
        break;
      }
      case engine::Op::Kind::load_batch:
      case engine::Op::Kind::begin_gradient:
      case engine::Op::Kind::read_loss:
        break;
    }
  }
  // Where communication cannot run beside compute (hardware.overlap < 1), part of it adds to the step.
  const double serial = t.compute + t.optimizer + t.gather + t.reduce_scatter + t.replicas;
  t.step = h.overlap * now + (1 - h.overlap) * serial + h.step_overhead;
  t.exposed = t.step - t.compute - t.optimizer;
  return t;
}

std::string Prediction::label() const {
  std::string out(config::to_string(plan.strategy));
  if (plan.strategy == config::Strategy::mics) out += " p=" + std::to_string(plan.shape.partition_size);
  if (plan.shape.spans_nodes() && plan.strategy == config::Strategy::mics) out += plan.hierarchical ? " hier" : " flat";
  if (plan.gather_bf16) out += " bf16";
  out += " B=" + std::to_string(plan.micro_batch) + " s=" + std::to_string(plan.grad_accum);
  if (recompute == Recompute::blocks) out += " recompute";
  return out;
}

Prediction predict(const Hardware& h, const model::GptShape& shape, int seq_len, const topology::ParallelPlan& plan,
                   Recompute recompute) {
  Prediction pr;
  pr.plan = plan;
  pr.recompute = recompute;
  pr.memory = plan_memory(h, shape, seq_len, plan, recompute);
  pr.time = plan_time(h, shape, seq_len, plan, recompute);
  const double tokens = static_cast<double>(plan.global_batch()) * seq_len;
  pr.tokens_per_s = tokens / pr.time.step;
  const double useful = model::Gpt::flops_per_token(shape, seq_len);
  pr.model_tflops_per_gpu = pr.tokens_per_s * useful / plan.shape.world / 1e12;
  // The recomputed forward of each block is work the hardware does but the model does not count.
  const double T = static_cast<double>(seq_len), C = shape.channels;
  const double extra = recompute == Recompute::blocks ? shape.layers * (24 * C * C + 2 * C * T) : 0;
  pr.hardware_tflops_per_gpu = pr.tokens_per_s * (useful + extra) / plan.shape.world / 1e12;
  pr.mfu = pr.model_tflops_per_gpu * 1e12 / h.peak_flops;
  return pr;
}

std::vector<Prediction> plan_all(const Hardware& h, const PlanRequest& request) {
  if (request.nodes < 1) throw InputError("--nodes must be at least 1");
  if (request.sequences_per_gpu < 1) throw InputError("the deck's micro_batch x grad_accum must be at least 1");
  const int R = h.gpus_per_node;
  const int world = request.nodes * R;
  std::vector<Prediction> out;
  auto add = [&](config::ParallelOptions parallel) {
    for (int B = 1; B <= request.sequences_per_gpu; ++B) {
      if (request.sequences_per_gpu % B) continue;
      const topology::ParallelPlan plan =
          topology::make_plan(parallel, B, request.sequences_per_gpu / B, world, R);
      for (Recompute rc : request.recompute) out.push_back(predict(h, request.shape, request.seq_len, plan, rc));
    }
  };
  using config::GatherDtype;
  using config::Strategy;
  using config::Switch;
  add({Strategy::ddp, 0, false, Switch::off, GatherDtype::fp32});
  if (world > 1) {
    for (GatherDtype dtype : {GatherDtype::fp32, GatherDtype::bf16})
      add({Strategy::zero3, 0, false, Switch::off, dtype});
  }
  for (int p = 2; p <= world; ++p) {  // p = world: zero3 with the choice of hierarchical gathers
    if (world % p) continue;
    if (p < R && R % p) continue;
    if (p > R && p % R) continue;
    for (GatherDtype dtype : {GatherDtype::fp32, GatherDtype::bf16}) {
      if (p > R) {
        add({Strategy::mics, p, true, Switch::on, dtype});
        add({Strategy::mics, p, true, Switch::off, dtype});
      } else {
        add({Strategy::mics, p, true, Switch::off, dtype});
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Prediction& a, const Prediction& b) {
    if (a.memory.fits != b.memory.fits) return a.memory.fits;
    return a.tokens_per_s > b.tokens_per_s;
  });
  return out;
}

std::string recommendation(const std::vector<Prediction>& sorted) {
  char buf[512];
  if (sorted.empty()) return "no configuration";
  if (!sorted.front().memory.fits) {
    const auto smallest = std::min_element(sorted.begin(), sorted.end(), [](const Prediction& a, const Prediction& b) {
      return a.memory.total < b.memory.total;
    });
    return "no configuration fits: the smallest is " + smallest->label() + ", which " + smallest->memory.verdict;
  }
  const Prediction& best = sorted.front();
  std::string versus;
  for (const Prediction& other : sorted) {
    if (other.plan.strategy == best.plan.strategy && other.plan.shape.partition_size == best.plan.shape.partition_size)
      continue;
    std::snprintf(buf, sizeof buf, "; next other layout %s at %.0f%% of its throughput%s", other.label().c_str(),
                  100 * other.tokens_per_s / best.tokens_per_s, other.memory.fits ? "" : " (does not fit)");
    versus = buf;
    break;
  }
  // The fastest configuration overall, when it is not the recommended one: why it was not chosen.
  std::string faster;
  const auto fastest = std::max_element(sorted.begin(), sorted.end(), [](const Prediction& a, const Prediction& b) {
    return a.tokens_per_s < b.tokens_per_s;
  });
  if (!fastest->memory.fits && fastest->tokens_per_s > 1.05 * best.tokens_per_s) {
    std::snprintf(buf, sizeof buf, "; %.1fx faster but not fitting: %s, which ", fastest->tokens_per_s / best.tokens_per_s,
                  fastest->label().c_str());
    faster = buf + fastest->memory.verdict;
  }
  std::snprintf(buf, sizeof buf,
                "recommended: %s: %.0f tokens/s, %.1f TFLOPS/GPU, MFU %.1f%%, %.1f of %.1f GiB per GPU; "
                "communication exposed %.0f%% of the step%s",
                best.label().c_str(), best.tokens_per_s, best.model_tflops_per_gpu, 100 * best.mfu,
                best.memory.total / kGiB, best.memory.capacity / kGiB, 100 * best.time.exposed / best.time.step,
                versus.c_str());
  return buf + faster;
}

}  // namespace mics::planner
