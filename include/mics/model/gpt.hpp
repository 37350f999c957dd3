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
#include <string>
#include <vector>

namespace mics::backends {
class Backend;
}

namespace mics::model {

struct GptShape {
  int layers = 0;        // L
  int heads = 0;         // NH
  int channels = 0;      // C
  int vocab = 0;         // V (real tokens)
  int padded_vocab = 0;  // Vp: V rounded up to a multiple of 128
  int max_seq_len = 0;   // maxT (rows of wpe)
};

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

}  // namespace mics::model
