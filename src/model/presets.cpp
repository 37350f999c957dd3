// Model shapes by name.
#include <array>
#include <string>

#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"

namespace mics::model {
namespace {

struct Preset {
  std::string_view name;
  int layers, heads, channels, vocab, max_seq_len;
};

// GPT-2 sizes from the GPT-2 paper; the large ones are the usual GPT-3-style scalings (12 L C^2 params).
constexpr std::array<Preset, 8> kPresets{{
    {"tiny", 2, 4, 64, 256, 64},  // learns a byte-level Markov corpus in minutes on two cores
    {"gpt2-124m", 12, 12, 768, 50257, 1024},
    {"gpt2-350m", 24, 16, 1024, 50257, 1024},
    {"gpt2-774m", 36, 20, 1280, 50257, 1024},
    {"gpt2-1.5b", 48, 25, 1600, 50257, 1024},
    {"gpt-10b", 32, 32, 5120, 50257, 2048},
    {"gpt-100b", 80, 80, 10240, 50257, 2048},
    {"gpt-175b", 96, 96, 12288, 50257, 2048},
}};

}  // namespace

int padded_vocab(int vocab) { return (vocab + 127) / 128 * 128; }

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

GptShape preset_shape(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (p.name == name) {
      return GptShape{p.layers, p.heads, p.channels, p.vocab, padded_vocab(p.vocab), p.max_seq_len};
    }
  }
  std::string known;
  for (const Preset& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  throw InputError("unknown model '" + std::string(name) + "' (presets: " + known + ")");
}

void validate_shape(const GptShape& s) {
  auto positive = [](const char* what, int value) {
    if (value <= 0) throw InputError(std::string("model ") + what + " = " + std::to_string(value) + " must be positive");
  };
  positive("layers", s.layers);
  positive("heads", s.heads);
  positive("channels", s.channels);
  positive("vocab", s.vocab);
  positive("max_seq_len", s.max_seq_len);
  if (s.channels % s.heads != 0) {
    throw InputError("model channels = " + std::to_string(s.channels) + " is not divisible by heads = " +
                std::to_string(s.heads));
  }
  if (s.padded_vocab < s.vocab) {
    throw InputError("model padded_vocab = " + std::to_string(s.padded_vocab) + " is smaller than vocab = " +
                std::to_string(s.vocab));
  }
}

std::optional<ShapeDifference> first_difference(const GptShape& found, const GptShape& expected) {
  const ShapeDifference fields[] = {
      {"max_seq_len (maxT)", found.max_seq_len, expected.max_seq_len},
      {"vocab (V)", found.vocab, expected.vocab},
      {"layers (L)", found.layers, expected.layers},
      {"heads (NH)", found.heads, expected.heads},
      {"channels (C)", found.channels, expected.channels},
      {"padded_vocab (Vp)", found.padded_vocab, expected.padded_vocab},
  };
  for (const ShapeDifference& d : fields)
    if (d.found != d.expected) return d;
  return std::nullopt;
}

ModelSpec resolve_model(const config::ModelOptions& options) {
  ModelSpec spec;
  spec.preset = options.preset;
  spec.shape = preset_shape(options.preset);
  if (options.layers) spec.shape.layers = *options.layers;
  if (options.heads) spec.shape.heads = *options.heads;
  if (options.channels) spec.shape.channels = *options.channels;
  if (options.vocab) spec.shape.vocab = *options.vocab;
  spec.shape.padded_vocab = padded_vocab(spec.shape.vocab);
  if (spec.shape.channels % spec.shape.heads != 0)
    throw InputError("model.heads = " + std::to_string(spec.shape.heads) + " does not divide model.channels = " +
                     std::to_string(spec.shape.channels));
  validate_shape(spec.shape);
  spec.seq_len = options.seq_len.value_or(spec.shape.max_seq_len);
  if (spec.seq_len > spec.shape.max_seq_len)
    throw InputError("model.seq_len = " + std::to_string(spec.seq_len) + " exceeds the preset's maximum " +
                     std::to_string(spec.shape.max_seq_len));
  return spec;
}

}  // namespace mics::model
