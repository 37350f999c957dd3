// The parameter table: which unit owns each tensor, where it sits in that unit's flat buffer, its shape.
#include <numeric>

#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

namespace mics::model {

ParamLayout::ParamLayout(const GptShape& shape) : shape_(shape) {
  validate_shape(shape_);
  const std::int64_t C = shape_.channels;
  const int L = shape_.layers;

  auto add_unit = [this](std::string name) {
    units_.push_back(UnitInfo{std::move(name), 0, {}});
  };
  auto add_tensor = [this](std::string name, std::vector<std::int64_t> dims) {
    UnitInfo& unit = units_.back();
    const std::size_t numel = std::accumulate(dims.begin(), dims.end(), std::size_t{1},
                                              [](std::size_t a, std::int64_t d) { return a * static_cast<std::size_t>(d); });
    tensors_.push_back(TensorInfo{std::move(name), static_cast<int>(units_.size()) - 1, unit.numel, std::move(dims), numel});
    unit.tensors.push_back(static_cast<int>(tensors_.size()) - 1);
    unit.numel += numel;
  };

  add_unit("embedding");
  add_tensor("wte.weight", {shape_.padded_vocab, C});
  add_tensor("wpe.weight", {shape_.max_seq_len, C});
  for (int l = 0; l < L; l++) {
    const std::string h = "h." + std::to_string(l) + ".";
    add_unit("h." + std::to_string(l));
    add_tensor(h + "ln_1.weight", {C});
    add_tensor(h + "ln_1.bias", {C});
    add_tensor(h + "attn.c_attn.weight", {3 * C, C});
    add_tensor(h + "attn.c_attn.bias", {3 * C});
    add_tensor(h + "attn.c_proj.weight", {C, C});
    add_tensor(h + "attn.c_proj.bias", {C});
    add_tensor(h + "ln_2.weight", {C});
    add_tensor(h + "ln_2.bias", {C});
    add_tensor(h + "mlp.c_fc.weight", {4 * C, C});
    add_tensor(h + "mlp.c_fc.bias", {4 * C});
    add_tensor(h + "mlp.c_proj.weight", {C, 4 * C});
    add_tensor(h + "mlp.c_proj.bias", {C});
  }
  add_unit("ln_f");
  add_tensor("ln_f.weight", {C});
  add_tensor("ln_f.bias", {C});
}

const TensorInfo& ParamLayout::tensor(const std::string& name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return t;
  }
  throw InputError("no parameter tensor named '" + name + "' in this model");
}

std::size_t ParamLayout::total_numel() const {
  std::size_t total = 0;
  for (const UnitInfo& u : units_) total += u.numel;
  return total;
}

}  // namespace mics::model
