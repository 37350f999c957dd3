// Config (strings checked against the schema) -> typed option structs: the only place below the command
// line that names deck keys.
#include "mics/config/options.hpp"

#include "mics/config/config.hpp"

#include "mics/util/error.hpp"
#include "mics/util/printable.hpp"

namespace mics::config {

std::string_view to_string(Strategy strategy) {
  switch (strategy) {
    case Strategy::mics: return "mics";
    case Strategy::zero3: return "zero3";
    case Strategy::ddp: return "ddp";
  }
  return "?";
}

std::string_view to_string(Switch value) {
  switch (value) {
    case Switch::automatic: return "auto";
    case Switch::on: return "on";
    case Switch::off: return "off";
  }
  return "?";
}

std::string_view to_string(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

std::string_view to_string(Recompute recompute) { return recompute == Recompute::blocks ? "blocks" : "none"; }

namespace {

// The schema bounds every integer key to the int range, so these narrowings are exact.
int int_of(const Config& c, std::string_view key) { return static_cast<int>(c.get_int(key)); }
std::optional<int> auto_int(const Config& c, std::string_view key) {
  if (auto v = c.get_int_or_auto(key)) return static_cast<int>(*v);
  return std::nullopt;
}

Switch switch_of(const std::string& text) {
  if (text == "on") return Switch::on;
  if (text == "off") return Switch::off;
  return Switch::automatic;
}

}  // namespace

Options read_options(const Config& c) {
  Options o;
  o.run = {c.get_string("run.name"), c.get_string("run.dir"), static_cast<std::uint64_t>(c.get_int("run.seed")),
           c.get_float("run.timeout")};
  o.log = {c.get_string("log.level"), c.get_bool("log.all_ranks"), c.get_string("log.file")};
  o.topology.ranks_per_node = auto_int(c, "topology.ranks_per_node").value_or(0);

  const std::string& strategy = c.get_string("parallel.strategy");
  o.parallel.strategy = strategy == "zero3" ? Strategy::zero3 : strategy == "ddp" ? Strategy::ddp : Strategy::mics;
  o.parallel.partition_size = auto_int(c, "parallel.partition_size").value_or(0);
  o.parallel.partition_size_set = c.is_set("parallel.partition_size");
  o.parallel.hierarchical = switch_of(c.get_string("parallel.hierarchical"));
  o.parallel.gather_dtype = c.get_string("parallel.gather_dtype") == "bf16" ? GatherDtype::bf16 : GatherDtype::fp32;

  o.model.preset = c.get_string("model.preset");
  o.model.layers = auto_int(c, "model.layers");
  o.model.heads = auto_int(c, "model.heads");
  o.model.channels = auto_int(c, "model.channels");
  o.model.vocab = auto_int(c, "model.vocab");
  o.model.seq_len = auto_int(c, "model.seq_len");
  o.model.init_text = c.get_string("model.init");
  if (o.model.init_text == "gpt2") {
    o.model.init = ModelOptions::Init::gpt2;
  } else if (o.model.init_text.rfind("llmc:", 0) == 0 && o.model.init_text.size() > 5) {
    o.model.init = ModelOptions::Init::llmc;
    o.model.init_path = o.model.init_text.substr(5);
  } else {
    throw InputError("model.init = " + printable(o.model.init_text) + ": not understood (expected gpt2 or llmc:PATH)");
  }

  o.data.train = c.get_string("data.train");
  o.data.val = c.get_string("data.val");
  o.data.order = c.get_string("data.order") == "sequential" ? DataOptions::Order::sequential
                                                             : DataOptions::Order::shuffle;

  TrainOptions& t = o.train;
  t.steps = int_of(c, "train.steps");
  t.micro_batch = int_of(c, "train.micro_batch");
  t.grad_accum = int_of(c, "train.grad_accum");
  t.lr = c.get_float("train.lr");
  t.min_lr_ratio = c.get_float("train.min_lr_ratio");
  t.warmup_steps = int_of(c, "train.warmup_steps");
  t.weight_decay = c.get_float("train.weight_decay");
  t.beta1 = c.get_float("train.beta1");
  t.beta2 = c.get_float("train.beta2");
  t.eps = c.get_float("train.eps");
  t.grad_clip = c.get_float("train.grad_clip");
  t.val_every = int_of(c, "train.val_every");
  t.val_batches = int_of(c, "train.val_batches");
  t.log_every = int_of(c, "train.log_every");
  t.skew_every = int_of(c, "train.skew_every");
  const std::string& resume = c.get_string("train.resume");
  t.resume = resume == "auto"    ? TrainOptions::Resume::automatic
             : resume == "never" ? TrainOptions::Resume::never
                                 : TrainOptions::Resume::path;
  if (t.resume == TrainOptions::Resume::path) t.resume_path = resume;
  t.save_final = c.get_string("train.save_final");
  t.recompute = c.get_string("train.recompute") == "blocks" ? Recompute::blocks : Recompute::none;
  t.nonfinite = c.get_string("train.nonfinite") == "skip" ? TrainOptions::NonFinite::skip
                                                            : TrainOptions::NonFinite::stop;
  t.max_skipped_steps = int_of(c, "train.max_skipped_steps");

  o.backend.device = c.get_string("backend.device") == "cuda" ? Device::cuda : Device::cpu;
  o.backend.threads = int_of(c, "backend.threads");
  const std::string& matmul = c.get_string("backend.matmul");
  o.backend.matmul = matmul == "bf16" ? Matmul::bf16 : matmul == "fp32" ? Matmul::fp32 : Matmul::automatic;
  const std::string& collectives = c.get_string("backend.collectives");
  o.backend.collectives = collectives == "nccl"     ? DeviceCollectives::nccl
                          : collectives == "staged" ? DeviceCollectives::staged
                                                    : DeviceCollectives::automatic;

  o.checkpoint.dir = c.get_string("checkpoint.dir");
  o.checkpoint.every_steps = int_of(c, "checkpoint.every_steps");
  o.checkpoint.every_minutes = c.get_float("checkpoint.every_minutes");
  o.checkpoint.keep = int_of(c, "checkpoint.keep");
  o.checkpoint.keep_every = int_of(c, "checkpoint.keep_every");
  o.checkpoint.at_end = c.get_bool("checkpoint.at_end");
  o.checkpoint.lock_stale_minutes = c.get_float("checkpoint.lock_stale_minutes");

  o.effective_deck = c.to_deck();
  return o;
}

}  // namespace mics::config
