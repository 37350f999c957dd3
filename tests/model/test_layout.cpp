// The parameter table, presets and flop count.
#include "catch.hpp"

#include <set>

#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

using namespace mics;
using namespace mics::model;

namespace {
// docs/file-formats.md#parameter-count: N = Vp*C + maxT*C + L*(12*C*C + 13*C) + 2*C
std::size_t formula_numel(const GptShape& s) {
  const std::size_t C = s.channels, L = s.layers;
  return s.padded_vocab * C + s.max_seq_len * C + L * (12 * C * C + 13 * C) + 2 * C;
}
}  // namespace

TEST_CASE("gpt2-124m has 124,475,904 parameters", "[model][layout]") {
  const GptShape s = preset_shape("gpt2-124m");
  CHECK(s.padded_vocab == 50304);
  ParamLayout layout(s);
  CHECK(layout.total_numel() == 124'475'904);
}

TEST_CASE("every preset matches the parameter formula; unknown names list the presets", "[model][layout]") {
  for (const std::string& name : preset_names()) {
    const GptShape s = preset_shape(name);
    INFO(name);
    CHECK(s.padded_vocab % 128 == 0);
    CHECK(s.padded_vocab >= s.vocab);
    CHECK(s.padded_vocab - s.vocab < 128);
    CHECK(s.channels % s.heads == 0);
    CHECK(ParamLayout(s).total_numel() == formula_numel(s));
  }
  CHECK(preset_shape("gpt-175b").max_seq_len == 2048);
  CHECK(preset_shape("gpt-175b").channels == 12288);
  CHECK_THROWS_AS(preset_shape("gpt5"), Error);
  CHECK_THROWS_WITH(preset_shape("gpt5"), Catch::Contains("gpt5") && Catch::Contains("gpt2-124m") &&
                                               Catch::Contains("tiny"));
  CHECK(padded_vocab(50257) == 50304);
  CHECK(padded_vocab(256) == 256);
  CHECK(padded_vocab(257) == 384);
}

TEST_CASE("layout: units, contiguous offsets, unique names, shapes", "[model][layout]") {
  const GptShape s{3, 2, 8, 50, 128, 16};
  ParamLayout layout(s);
  const auto& units = layout.units();
  REQUIRE(units.size() == 5);  // embedding, h.0..h.2, ln_f
  CHECK(units[0].name == "embedding");
  CHECK(units[2].name == "h.1");
  CHECK(units[4].name == "ln_f");
  std::set<std::string> names;
  std::size_t total = 0;
  for (std::size_t u = 0; u < units.size(); u++) {
    std::size_t offset = 0;
    for (int index : units[u].tensors) {
      const TensorInfo& t = layout.tensors()[static_cast<std::size_t>(index)];
      CHECK(t.unit == static_cast<int>(u));
      CHECK(t.offset == offset);  // back to back, in table order
      std::size_t product = 1;
      for (auto d : t.shape) product *= static_cast<std::size_t>(d);
      CHECK(product == t.numel);
      offset += t.numel;
      CHECK(names.insert(t.name).second);
    }
    CHECK(offset == units[u].numel);
    total += units[u].numel;
  }
  CHECK(names.size() == layout.tensors().size());
  CHECK(layout.tensors().size() == 2 + 12 * 3 + 2);
  CHECK(total == layout.total_numel());
  CHECK(total == formula_numel(s));

  using Shape = std::vector<std::int64_t>;
  CHECK(layout.tensor("wte.weight").shape == Shape{128, 8});
  CHECK(layout.tensor("wpe.weight").shape == Shape{16, 8});
  CHECK(layout.tensor("h.2.attn.c_attn.weight").shape == Shape{24, 8});
  CHECK(layout.tensor("h.2.attn.c_attn.weight").unit == 3);
  CHECK(layout.tensor("h.0.attn.c_proj.weight").shape == Shape{8, 8});
  CHECK(layout.tensor("h.1.mlp.c_fc.weight").shape == Shape{32, 8});
  CHECK(layout.tensor("h.1.mlp.c_fc.bias").shape == Shape{32});
  CHECK(layout.tensor("h.1.mlp.c_proj.weight").shape == Shape{8, 32});
  CHECK(layout.tensor("ln_f.bias").offset == 8);
  CHECK_THROWS_WITH(layout.tensor("h.9.ln_1.weight"), Catch::Contains("h.9.ln_1.weight"));
}

TEST_CASE("shapes are validated with named values", "[model][layout]") {
  CHECK_THROWS_WITH(ParamLayout(GptShape{2, 3, 16, 50, 128, 8}), Catch::Contains("heads = 3"));
  CHECK_THROWS_WITH(ParamLayout(GptShape{0, 2, 16, 50, 128, 8}), Catch::Contains("layers = 0"));
  CHECK_THROWS_WITH(ParamLayout(GptShape{2, 2, 16, 500, 128, 8}), Catch::Contains("padded_vocab = 128"));
}

TEST_CASE("flops per token = 6N + 6LCT", "[model]") {
  const GptShape s = preset_shape("gpt2-124m");
  CHECK(Gpt::flops_per_token(s, 1024) == 6.0 * 124'475'904 + 6.0 * 12 * 768 * 1024);
}
