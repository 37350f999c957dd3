// llm.c GPT-2 model files (weights only): a 256 x int32 header, then 16 tensors in llm.c order.
//   header: [0] magic 20240326 [1] version (3 = fp32, 5 = bf16) [2] maxT [3] V [4] L [5] NH [6] C [7] Vp
//   tensors: wte (Vp,C), wpe (maxT,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
//            attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C), fcb (L,4C),
//            fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C)
// Layered tensors hold all L layers back to back, so one file tensor maps onto L mics tensors
// (h.{l}.ln_1.weight, ...) that live in different units; this module does that mapping by name.
#pragma once
#include <string_view>
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "mics/model/gpt.hpp"

namespace mics::model {

inline constexpr std::int32_t kLlmcModelMagic = 20240326;
inline constexpr int kLlmcVersionFp32 = 3;
inline constexpr int kLlmcVersionBf16 = 5;

// The 256-int32 header of a model of `shape` in file `version` (3 or 5).
std::array<std::int32_t, 256> llmc_header(const GptShape& shape, int version);

// One tensor of the file, in file order: the mics name suffix of each layer's slice ("ln_1.weight" ->
// h.{l}.ln_1.weight, all L layers back to back), or a whole top-level tensor when layered is false.
struct LlmcTensor {
  std::string_view name;
  bool layered;
};
inline constexpr std::array<LlmcTensor, 16> kLlmcFileOrder = {{
    {"wte.weight", false},         {"wpe.weight", false},        {"ln_1.weight", true},
    {"ln_1.bias", true},           {"attn.c_attn.weight", true}, {"attn.c_attn.bias", true},
    {"attn.c_proj.weight", true},  {"attn.c_proj.bias", true},   {"ln_2.weight", true},
    {"ln_2.bias", true},           {"mlp.c_fc.weight", true},    {"mlp.c_fc.bias", true},
    {"mlp.c_proj.weight", true},   {"mlp.c_proj.bias", true},    {"ln_f.weight", false},
    {"ln_f.bias", false},
}};

// The shape a model file holds, after checking magic, version and that the file size matches it.
// Throws mics::Error naming the file: bad magic, unsupported version, truncated, size mismatch.
GptShape read_llmc_header(const std::string& path);
// The header's version (3 or 5), with the same checks.
int read_llmc_version(const std::string& path);

// Streams every tensor of the file into its place: unit_buffer(u) is the flat fp32 buffer of unit u
// (at least layout.units()[u].numel floats), called once per tensor. bf16 files (version 5) widen
// exactly to float. Throws mics::Error naming the file for the header errors above and for a shape
// that differs from layout.shape() (naming the field and both values).
void load_llmc_weights(const std::string& path, const ParamLayout& layout,
                       const std::function<float*(int unit)>& unit_buffer);

// Writes the model in llm.c order, version 3 (fp32, bit-exact) or 5 (bf16, round to nearest even).
// The file appears complete or not at all (written to PATH.tmp, then renamed).
void save_llmc_weights(const std::string& path, const ParamLayout& layout,
                       const std::function<const float*(int unit)>& unit_buffer, int version = kLlmcVersionFp32);

}  // namespace mics::model
