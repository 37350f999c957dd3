// GPT-2 on a compute backend, cut into units for the MiCS engine.
//
// Parameters live in one flat buffer per unit (llm.c style): unit 0 = embeddings (wte, wpe),
// units 1..L = transformer blocks, unit L+1 = final layernorm. A table maps every tensor name to its
// unit, offset and shape. The engine gathers a unit's flat buffer, then runs the stages that use it;
// the LM head reuses unit 0 (wte is tied), so its gradient comes from two stages.
//
// This header is the contract between the model and the engine: the engine never looks inside a unit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mics/backends/backend.hpp"
#include "mics/config/options.hpp"

namespace mics::model {

struct GptShape {
  int layers = 0;        // L
  int heads = 0;         // NH
  int channels = 0;      // C
  int vocab = 0;         // V (real tokens)
  int padded_vocab = 0;  // Vp: V rounded up to a multiple of 128
  int max_seq_len = 0;   // maxT (rows of wpe)
};

// V rounded up to a multiple of 128.
int padded_vocab(int vocab);
// Presets: tiny, gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1.5b, gpt-10b, gpt-100b, gpt-175b; an unknown name
// throws mics::Error listing them.
GptShape preset_shape(std::string_view name);
std::vector<std::string> preset_names();
// Throws mics::Error naming the bad value (non-positive sizes, C not divisible by NH, Vp < V ...).
void validate_shape(const GptShape& shape);

// The model a deck describes: the preset's shape with the [model] keys that are not auto overriding it,
// and the sequence length (auto: the preset's maximum). Validated once; throws InputError naming the key.
struct ModelSpec {
  std::string preset;
  GptShape shape;
  int seq_len = 0;  // T <= shape.max_seq_len
};
ModelSpec resolve_model(const config::ModelOptions& options);

// The first field in which two shapes differ (for "the file has X = a but the model has b" errors).
struct ShapeDifference {
  const char* field;  // "layers (L)", "channels (C)", ...
  int found;
  int expected;
};
std::optional<ShapeDifference> first_difference(const GptShape& found, const GptShape& expected);

struct TensorInfo {
  std::string name;              // GPT-2 names: "wte.weight", "h.3.attn.c_attn.weight", "ln_f.bias"
  int unit = 0;
  std::size_t offset = 0;        // elements from the start of its unit's flat buffer
  std::vector<std::int64_t> shape;  // nn.Linear layout (out, in), as llm.c stores it
  std::size_t numel = 0;
};

struct UnitInfo {
  std::string name;  // "embedding", "h.3", "ln_f"
  std::size_t numel = 0;
  std::vector<int> tensors;  // indices into ParamLayout::tensors()
};

class ParamLayout {
 public:
  explicit ParamLayout(const GptShape& shape);
  const GptShape& shape() const { return shape_; }
  const std::vector<UnitInfo>& units() const { return units_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo& tensor(const std::string& name) const;  // throws mics::Error naming it
  std::size_t total_numel() const;

 private:
  GptShape shape_;
  std::vector<UnitInfo> units_;
  std::vector<TensorInfo> tensors_;
};

// One step of the forward or backward pass; `unit` is whose parameters it needs gathered.
struct Stage {
  enum class Kind { Embed, Block, FinalNorm, Head };
  Kind kind;
  int unit;
  int layer = -1;  // for Block
};

// The stages in the order they run: forward Embed(unit 0), Block(units 1..L), FinalNorm(unit L+1), Head(unit 0);
// backward the reverse: Head, FinalNorm, Block(L..1), Embed.
std::vector<Stage> forward_stages(int layers);
std::vector<Stage> backward_stages(int layers);

// With recompute = blocks, whether the backward of `stage` must be preceded by Gpt::recompute of it: every
// Block stage but the last one's, whose activations the forward leaves in the scratch block
// (docs/algorithms.md#activation-recomputation).
bool needs_recompute(const Stage& stage, int layers, config::Recompute recompute);

// GPT-2 forward and backward for one micro-batch (B, T), stage by stage. Owns its activations (allocated
// once, in backend memory); the engine owns parameter and gradient buffers and passes each stage its
// unit's flat buffers. recompute = none keeps every block's activations; blocks keeps only each block's
// output (the next block's input) and one scratch block, which Gpt::recompute refills before a backward.
class Gpt {
 public:
  Gpt(const GptShape& shape, backends::Backend& backend, int micro_batch /*B*/, int seq_len /*T <= maxT*/,
      config::Recompute recompute = config::Recompute::none);
  ~Gpt();
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const ParamLayout& layout() const { return layout_; }
  int micro_batch() const { return B_; }
  int seq_len() const { return T_; }


  // Host pointers, B*T token ids each, every id in [0, V) (else mics::Error naming it); copied to backend memory.
  void set_batch(const std::int32_t* inputs, const std::int32_t* targets);
  // unit_params: that unit's gathered flat buffer (backend memory). Stages must run in forward_stages order.
  void forward(const Stage& stage, const float* unit_params);
  // Mean cross-entropy over the B*T positions, valid after the Head forward (also after the backward:
  // the per-position losses are kept). The first call per batch waits for the device.
  float loss() const;
  // ACCUMULATES (+=) the gradient of grad_scale * loss into unit_grads. Stages run in backward_stages
  // order after a full forward; the Head stage starts the chain, so grad_scale must be the same for all
  // stages of one backward pass.
  void backward(const Stage& stage, const float* unit_params, float* unit_grads, float grad_scale);
  // recompute = blocks: runs a Block stage's forward again from the block's kept input, with the same
  // kernels on the same inputs (so bit for bit the forward's values), filling the scratch block its
  // backward reads. Required before the backward of every stage for which needs_recompute() is true.
  void recompute(const Stage& stage, const float* unit_params);
  config::Recompute recompute_mode() const { return recompute_; }

  // GPT-2 init of one unit's flat buffer (backend memory): N(0, 0.02), residual projections scaled by
  // 1/sqrt(2L), LN weight 1, biases 0, wte padding rows 0. Deterministic per (seed, unit) alone.
  void init_unit(int unit, float* unit_params, std::uint64_t seed) const;
  // The same values for elements [begin, end) of the unit's flat buffer only (end clipped to its numel),
  // written to out[0, end - begin): a rank initialises just its shard.
  void init_unit_range(int unit, float* out, std::uint64_t seed, std::size_t begin, std::size_t end) const;

  static double flops_per_token(const GptShape& shape, int seq_len);  // 6N + 6 L C T
  // Bytes of activations (and the backward's scratch) a Gpt of this shape allocates, before allocating.
  static std::size_t activation_bytes(const GptShape& shape, int micro_batch, int seq_len,
                                      config::Recompute recompute);
  std::size_t activation_bytes() const;

 private:
  struct Activations;
  void forward_block(int layer, const float* params, bool recomputing);
  void backward_block(int layer, const float* params, float* grads);

  ParamLayout layout_;
  backends::Backend& backend_;
  int B_ = 0;
  int T_ = 0;
  config::Recompute recompute_ = config::Recompute::none;
  std::unique_ptr<Activations> acts_;
  mutable float loss_ = 0.0f;
  bool have_loss_ = false;
  mutable bool loss_read_ = false;  // loss_ holds the mean of the Head forward's losses
  bool logits_hold_grads_ = false;  // the Head backward turned the logits into their gradient
  float chain_scale_ = 0.0f;
};

// Single-process convenience: the whole forward and backward over full (ungathered) per-unit buffers
// (one pointer per unit, in unit order). Returns the mean loss; ACCUMULATES grad_scale * dloss into
// unit_grads (pass an empty span to run the forward only).
float forward_backward(Gpt& gpt, std::span<const float* const> unit_params, std::span<float* const> unit_grads,
                       float grad_scale = 1.0f);

}  // namespace mics::model
