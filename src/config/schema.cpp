// The one table of every key mics knows, in deck order, plus name lookups for "did you mean" messages.
#include <algorithm>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mics/config/config.hpp"

namespace mics::config {

namespace {

constexpr double kNoBound = 1e300;

KeyDef make_key(std::string name, Type type, std::string default_value, std::string help) {
  KeyDef def;
  def.name = std::move(name);
  def.type = type;
  def.default_value = std::move(default_value);
  def.help = std::move(help);
  return def;
}

// Integer keys hold an int: the upper bound keeps every value exact once read (no narrowing).
KeyDef int_key(std::string name, std::string default_value, double min, std::string help,
               bool allow_auto = false) {
  KeyDef def = make_key(std::move(name), Type::Int, std::move(default_value), std::move(help));
  def.min = min;
  def.max = std::numeric_limits<int>::max();
  def.allow_auto = allow_auto;
  return def;
}

// Float keys become floats (learning rates, betas): the upper bound keeps every value finite once read.
KeyDef float_key(std::string name, std::string default_value, double min, double max, std::string help,
                 bool min_exclusive = false, bool max_exclusive = false) {
  KeyDef def = make_key(std::move(name), Type::Float, std::move(default_value), std::move(help));
  def.min = min;
  def.max = std::min(max, static_cast<double>(std::numeric_limits<float>::max()));
  def.min_exclusive = min_exclusive;
  def.max_exclusive = max_exclusive;
  return def;
}

KeyDef bool_key(std::string name, std::string default_value, std::string help) {
  return make_key(std::move(name), Type::Bool, std::move(default_value), std::move(help));
}

KeyDef string_key(std::string name, std::string default_value, std::string help) {
  return make_key(std::move(name), Type::String, std::move(default_value), std::move(help));
}

KeyDef choice_key(std::string name, std::string default_value, std::vector<std::string> choices,
                  std::string help) {
  KeyDef def = make_key(std::move(name), Type::Choice, std::move(default_value), std::move(help));
  def.choices = std::move(choices);
  return def;
}

std::vector<KeyDef> build_schema() {
  return {
      // [run]
      string_key("run.name", "mics", "name of this run; metrics go to <run.dir>/<run.name>"),
      string_key("run.dir", "runs", "root directory of run directories (each holds its metrics.jsonl)"),
      [] {  // a seed is any 64-bit value, not an int
        KeyDef seed = int_key("run.seed", "1337", 0, "seed for initialization and data order");
        seed.max = 9.2e18;
        return seed;
      }(),
      float_key("run.timeout", "10", 0, kNoBound,
                "minutes a collective may make no progress before the job stops with the ranks it waited on; "
                "0 = wait forever"),
      // [log]
      choice_key("log.level", "info", {"trace", "debug", "info", "warning", "error"},
                 "least severe message printed"),
      bool_key("log.all_ranks", "false", "every rank prints to the console, not only rank 0"),
      string_key("log.file", "", "per-rank log file pattern, %r = rank (empty: no files)"),
      // [topology]
      int_key("topology.ranks_per_node", "auto", 1,
              "ranks on one node; auto = from MPI_Comm_split_type(SHARED)", true),
      // [parallel]
      choice_key("parallel.strategy", "mics", {"mics", "zero3", "ddp"},
                 "mics = shard in partition groups, zero3 = shard over all ranks, ddp = replicate"),
      int_key("parallel.partition_size", "auto", 1,
              "ranks sharing one copy of the model states; auto = ranks per node", true),
      choice_key("parallel.hierarchical", "auto", {"auto", "on", "off"},
                 "hierarchical all-gather (inter-node, then intra-node) and reduce-scatter (intra-node, then "
                 "inter-node) when a partition group spans nodes; auto = when it does"),
      choice_key("parallel.gather_dtype", "fp32", {"fp32", "bf16"},
                 "precision of gathered parameters: bf16 halves the all-gather bytes (master weights stay fp32)"),
      // [model]
      choice_key("model.preset", "tiny",
                 {"tiny", "gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1.5b", "gpt-10b", "gpt-100b",
                  "gpt-175b"},
                 "model shape; the keys below override parts of it"),
      int_key("model.layers", "auto", 1, "transformer blocks; auto = from the preset", true),
      int_key("model.heads", "auto", 1, "attention heads; auto = from the preset", true),
      int_key("model.channels", "auto", 1, "embedding width; auto = from the preset", true),
      int_key("model.vocab", "auto", 1, "vocabulary size; auto = from the preset", true),
      int_key("model.seq_len", "auto", 1, "tokens per sequence; auto = the preset's maximum", true),
      string_key("model.init", "gpt2",
                 "gpt2 = GPT-2 initialization from run.seed, llmc:PATH = weights from an llm.c model file"),
      // [data]
      string_key("data.train", "data/synth/train_*.bin", "training token shards (glob, llm.c format)"),
      string_key("data.val", "data/synth/val_*.bin", "validation token shards (glob, llm.c format)"),
      choice_key("data.order", "shuffle", {"shuffle", "sequential"},
                 "shuffle = every sequence at a hashed random offset; sequential = the shards read in order "
                 "(llm.c), one window of global_batch x seq_len + 1 tokens per step"),
      // [train]
      int_key("train.steps", "100", 1, "optimizer steps to run"),
      int_key("train.micro_batch", "4", 1, "sequences per rank per micro-step"),
      int_key("train.grad_accum", "1", 1, "micro-steps per optimizer step"),
      float_key("train.lr", "6e-4", 0, kNoBound, "peak learning rate", true),
      float_key("train.min_lr_ratio", "0.1", 0, 1, "final learning rate as a fraction of train.lr (cosine)"),
      int_key("train.warmup_steps", "10", 0, "linear warmup steps"),
      float_key("train.weight_decay", "0.1", 0, kNoBound, "AdamW weight decay (matrices only)"),
      float_key("train.beta1", "0.9", 0, 1, "AdamW first-moment decay", false, true),
      float_key("train.beta2", "0.95", 0, 1, "AdamW second-moment decay", false, true),
      float_key("train.eps", "1e-8", 0, kNoBound, "AdamW epsilon", true),
      float_key("train.grad_clip", "1.0", 0, kNoBound, "clip the global gradient norm to this; 0 = off"),
      int_key("train.val_every", "0", 0, "validate every N steps; 0 = never"),
      int_key("train.val_batches", "4", 1, "micro-batches per validation"),
      int_key("train.log_every", "1", 1, "print metrics every N steps"),
      int_key("train.skew_every", "10", 0,
              "every N steps record the slowest and fastest rank's step time and the largest memory; 0 = never"),
      string_key("train.resume", "auto",
                 "auto = latest checkpoint in checkpoint.dir if any, never = start fresh, or a PATH"),
      string_key("train.save_final", "",
                 "write the final weights as an llm.c model file (version 3, fp32) to this PATH"),
      choice_key("train.recompute", "none", {"none", "blocks"},
                 "activations: none = keep every block's, blocks = keep each block's input and run its forward "
                 "again before its backward (same losses, less memory, about one more forward)"),
      choice_key("train.nonfinite", "stop", {"stop", "skip"},
                 "a step whose loss, gradient norm or update is not finite changes no state; stop = end the run "
                 "(exit 1) naming the step, skip = go on to the next batch"),
      int_key("train.max_skipped_steps", "10", 1,
              "with train.nonfinite = skip, stop after this many skipped steps in a row"),
      // [backend]
      choice_key("backend.device", "cpu", {"cpu", "cuda"}, "compute backend"),
      int_key("backend.threads", "0", 0, "CPU threads per rank; 0 = OpenMP default"),
      choice_key("backend.matmul", "auto", {"auto", "bf16", "fp32"},
                 "GEMM arithmetic: bf16 = tensor cores with fp32 accumulation (cuda only), fp32 = exact fp32; "
                 "auto = bf16 on cuda, fp32 on cpu"),
      choice_key("backend.collectives", "auto", {"auto", "nccl", "staged"},
                 "collectives on GPU memory (cuda only): nccl, staged = MPI through pinned host buffers (ranks "
                 "sharing a GPU); auto = nccl unless ranks share a GPU"),
      // [checkpoint]
      string_key("checkpoint.dir", "checkpoints", "directory of checkpoints"),
      int_key("checkpoint.every_steps", "0", 0, "save every N steps; 0 = off"),
      float_key("checkpoint.every_minutes", "0", 0, kNoBound, "save every N minutes of training; 0 = off"),
      int_key("checkpoint.keep", "2", 1, "most recent checkpoints kept"),
      int_key("checkpoint.keep_every", "0", 0, "also keep every checkpoint whose step is a multiple of N; 0 = off"),
      bool_key("checkpoint.at_end", "true", "write a checkpoint after the last step (unless one was just written)"),
      float_key("checkpoint.lock_stale_minutes", "60", 0, kNoBound,
                "a run lock held from another host (without scontrol to ask) is stale after this many minutes "
                "without a heartbeat"),
  };
}

// Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions
// each cost 1, so the common typo "stpes" is one edit from "steps".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::string closest_of(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& candidate : candidates) {
    const std::size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

}  // namespace

const std::vector<KeyDef>& schema() {
  static const std::vector<KeyDef> table = build_schema();
  return table;
}

const KeyDef* find_key(std::string_view name) {
  for (const auto& def : schema()) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

std::string closest_key(std::string_view name) {
  std::vector<std::string> names;
  for (const auto& def : schema()) names.push_back(def.name);
  return closest_of(name, names);
}

std::vector<std::string> sections() {
  std::vector<std::string> result;
  for (const auto& def : schema()) {
    std::string section = def.name.substr(0, def.name.find('.'));
    if (result.empty() || result.back() != section) result.push_back(std::move(section));
  }
  return result;
}

std::string closest_section(std::string_view name) { return closest_of(name, sections()); }

}  // namespace mics::config
