#include "mics/model/llmc_file.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>

#include "mics/util/bf16.hpp"
#include "mics/util/error.hpp"

namespace mics::model {

static_assert(std::endian::native == std::endian::little, "llm.c files are little-endian and read in place");

namespace {

constexpr std::size_t kHeaderInts = 256;
constexpr std::size_t kHeaderBytes = kHeaderInts * sizeof(std::int32_t);
// Conversion chunk for bf16: bounded memory whatever the tensor size.
constexpr std::size_t kChunkElements = std::size_t{1} << 20;

using Header = std::array<std::int32_t, kHeaderInts>;


std::size_t element_bytes(int version) { return version == kLlmcVersionBf16 ? 2 : 4; }

// Parameter count of a shape: Vp*C + maxT*C + L*(12*C*C + 13*C) + 2*C.
std::size_t parameter_count(const GptShape& s) {
  const auto C = static_cast<std::size_t>(s.channels), L = static_cast<std::size_t>(s.layers);
  return static_cast<std::size_t>(s.padded_vocab) * C + static_cast<std::size_t>(s.max_seq_len) * C +
         L * (12 * C * C + 13 * C) + 2 * C;
}

GptShape shape_of(const Header& h) {
  GptShape s;
  s.max_seq_len = h[2];
  s.vocab = h[3];
  s.layers = h[4];
  s.heads = h[5];
  s.channels = h[6];
  s.padded_vocab = h[7];
  return s;
}

// Reads and checks the header: magic, version, positive sizes and the file size they imply.
Header read_checked_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("model file " + path + ": cannot open");
  Header h{};
  in.read(reinterpret_cast<char*>(h.data()), kHeaderBytes);
  if (static_cast<std::size_t>(in.gcount()) != kHeaderBytes)
    throw InputError("model file " + path + ": truncated: shorter than the 1024-byte header");
  if (h[0] != kLlmcModelMagic)
    throw InputError("model file " + path + ": bad magic " + std::to_string(h[0]) + " (expected " +
                std::to_string(kLlmcModelMagic) + ", an llm.c GPT-2 model file)");
  if (h[1] != kLlmcVersionFp32 && h[1] != kLlmcVersionBf16)
    throw InputError("model file " + path + ": unsupported version " + std::to_string(h[1]) +
                " (supported: 3 = fp32, 5 = bf16)");
  const GptShape s = shape_of(h);
  try {
    validate_shape(s);
  } catch (const Error& e) {
    throw InputError("model file " + path + ": bad header: " + e.what());
  }
  const std::size_t expected = kHeaderBytes + parameter_count(s) * element_bytes(h[1]);
  const auto actual = static_cast<std::size_t>(std::filesystem::file_size(path));
  if (actual < expected)
    throw InputError("model file " + path + ": truncated: the header's shape needs " + std::to_string(expected) +
                " bytes but the file has " + std::to_string(actual));
  if (actual > expected)
    throw InputError("model file " + path + ": size mismatch: the header's shape needs " + std::to_string(expected) +
                " bytes but the file has " + std::to_string(actual));
  return h;
}

void check_same_shape(const std::string& path, const GptShape& file, const GptShape& model) {
  if (const auto d = first_difference(file, model))
    throw InputError("model file " + path + ": shape mismatch: " + d->field + " is " + std::to_string(d->found) +
                " in the file but " + std::to_string(d->expected) + " in the model");
}

// Calls visit(tensor) for every mics tensor in the order its elements appear in the file.
template <typename Visit>
void for_each_in_file_order(const ParamLayout& layout, Visit&& visit) {
  for (const LlmcTensor& ft : kLlmcFileOrder) {
    if (!ft.layered) {
      visit(layout.tensor(std::string(ft.name)));
      continue;
    }
    for (int l = 0; l < layout.shape().layers; ++l)
      visit(layout.tensor("h." + std::to_string(l) + "." + std::string(ft.name)));
  }
}

}  // namespace

GptShape read_llmc_header(const std::string& path) { return shape_of(read_checked_header(path)); }

int read_llmc_version(const std::string& path) { return read_checked_header(path)[1]; }

void load_llmc_weights(const std::string& path, const ParamLayout& layout,
                       const std::function<float*(int unit)>& unit_buffer) {
  const Header header = read_checked_header(path);
  check_same_shape(path, shape_of(header), layout.shape());
  const int version = header[1];

  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("model file " + path + ": cannot open");
  in.seekg(static_cast<std::streamoff>(kHeaderBytes));
  std::vector<bf16> staging;
  if (version == kLlmcVersionBf16) staging.resize(kChunkElements);

  for_each_in_file_order(layout, [&](const TensorInfo& t) {
    float* dst = unit_buffer(t.unit) + t.offset;
    if (version == kLlmcVersionFp32) {
      in.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(t.numel * sizeof(float)));
    } else {
      for (std::size_t done = 0; done < t.numel && in; done += kChunkElements) {
        const std::size_t n = std::min(kChunkElements, t.numel - done);
        in.read(reinterpret_cast<char*>(staging.data()), static_cast<std::streamsize>(n * sizeof(bf16)));
        for (std::size_t i = 0; i < n; ++i) dst[done + i] = staging[i].to_float();
      }
    }
    if (!in) throw InputError("model file " + path + ": truncated while reading " + t.name);
  });
}

std::array<std::int32_t, 256> llmc_header(const GptShape& s, int version) {
  std::array<std::int32_t, 256> header{};
  header[0] = kLlmcModelMagic;
  header[1] = version;
  header[2] = s.max_seq_len;
  header[3] = s.vocab;
  header[4] = s.layers;
  header[5] = s.heads;
  header[6] = s.channels;
  header[7] = s.padded_vocab;
  return header;
}

void save_llmc_weights(const std::string& path, const ParamLayout& layout,
                       const std::function<const float*(int unit)>& unit_buffer, int version) {
  if (version != kLlmcVersionFp32 && version != kLlmcVersionBf16)
    throw InputError("model file " + path + ": cannot write version " + std::to_string(version) +
                " (supported: 3 = fp32, 5 = bf16)");
  const Header header = llmc_header(layout.shape(), version);

  const std::string temp_path = path + ".tmp";
  {
    std::ofstream out(temp_path, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("model file " + temp_path + ": cannot open for writing");
    out.write(reinterpret_cast<const char*>(header.data()), kHeaderBytes);
    std::vector<bf16> staging;
    if (version == kLlmcVersionBf16) staging.resize(kChunkElements);
    for_each_in_file_order(layout, [&](const TensorInfo& t) {
      const float* src = unit_buffer(t.unit) + t.offset;
      if (version == kLlmcVersionFp32) {
        out.write(reinterpret_cast<const char*>(src), static_cast<std::streamsize>(t.numel * sizeof(float)));
      } else {
        for (std::size_t done = 0; done < t.numel; done += kChunkElements) {
          const std::size_t n = std::min(kChunkElements, t.numel - done);
          for (std::size_t i = 0; i < n; ++i) staging[i] = bf16(src[done + i]);
          out.write(reinterpret_cast<const char*>(staging.data()), static_cast<std::streamsize>(n * sizeof(bf16)));
        }
      }
    });
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp_path, ignored);
      throw InputError("model file " + temp_path + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp_path, path, ec);
  if (ec) throw InputError("model file " + path + ": cannot rename " + temp_path + " into place: " + ec.message());
}

}  // namespace mics::model
