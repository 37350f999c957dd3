// llm.c model files: v3 round trip bit-exact, v5 within bf16 rounding, the llm.c tensor order checked
// against offsets computed by hand, and one message per kind of bad file.
#include "catch.hpp"
#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include "temp_dir.hpp"
#include "mics/model/llmc_file.hpp"
#include "mics/util/bf16.hpp"
#include "mics/util/error.hpp"

using namespace mics::model;
using mics::test::TempDir;

namespace {

// L=2, NH=2, C=8, V=50 (Vp=128), maxT=16.
GptShape small_shape() { return GptShape{2, 2, 8, 50, 128, 16}; }

// One flat buffer per unit, every element distinct and not exactly representable in bf16.
std::vector<std::vector<float>> make_units(const ParamLayout& layout) {
  std::vector<std::vector<float>> units;
  float next = 0.0f;
  for (const UnitInfo& unit : layout.units()) {
    std::vector<float> buffer(unit.numel);
    for (float& x : buffer) {
      next += 1.0f;
      x = std::sin(next) * 0.37f + next * 1e-5f;
    }
    units.push_back(std::move(buffer));
  }
  return units;
}

std::vector<std::vector<float>> zero_units(const ParamLayout& layout) {
  std::vector<std::vector<float>> units;
  for (const UnitInfo& unit : layout.units()) units.emplace_back(unit.numel, 0.0f);
  return units;
}

void save(const std::string& path, const ParamLayout& layout, const std::vector<std::vector<float>>& units,
          int version) {
  save_llmc_weights(path, layout, [&](int u) { return units[static_cast<std::size_t>(u)].data(); }, version);
}

void load(const std::string& path, const ParamLayout& layout, std::vector<std::vector<float>>& units) {
  load_llmc_weights(path, layout, [&](int u) { return units[static_cast<std::size_t>(u)].data(); });
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

float value_of(const ParamLayout& layout, const std::vector<std::vector<float>>& units, const std::string& name,
               std::size_t i) {
  const TensorInfo& t = layout.tensor(name);
  return units[static_cast<std::size_t>(t.unit)][t.offset + i];
}

}  // namespace

TEST_CASE("llm.c file: version 3 round trip is bit-exact, in llm.c order", "[llmc]") {
  TempDir dir("llmc3");
  const ParamLayout layout(small_shape());
  const auto units = make_units(layout);
  const std::string path = dir.file("model.bin");
  save(path, layout, units, 3);

  // N = Vp*C + maxT*C + L*(12*C*C + 13*C) + 2*C = 1024 + 128 + 2*(768 + 104) + 16 = 2912.
  REQUIRE(layout.total_numel() == 2912);
  const std::vector<char> bytes = read_bytes(path);
  REQUIRE(bytes.size() == 1024 + 4 * 2912);
  std::int32_t header[8];
  std::memcpy(header, bytes.data(), sizeof(header));
  CHECK(header[0] == 20240326);
  CHECK(header[1] == 3);
  CHECK(header[2] == 16);   // maxT
  CHECK(header[3] == 50);   // V
  CHECK(header[4] == 2);    // L
  CHECK(header[5] == 2);    // NH
  CHECK(header[6] == 8);    // C
  CHECK(header[7] == 128);  // Vp

  // Starts (in floats) from the llm.c order: wte 0 (1024), wpe 1024 (128), ln1w 1152 (L*C = 16),
  // ln1b 1168, qkvw 1184 (L*3C*C = 384), qkvb 1568 (48), attprojw 1616 (128), attprojb 1744 (16),
  // ln2w 1760, ln2b 1776, fcw 1792 (L*4C*C = 512), fcb 2304 (64), fcprojw 2368 (512), fcprojb 2880,
  // lnfw 2896 (8), lnfb 2904 (8), end 2912. Layer l of a layered tensor starts l * (its size / L) later.
  const auto file_float = [&](std::size_t index) {
    float x;
    std::memcpy(&x, bytes.data() + 1024 + 4 * index, 4);
    return x;
  };
  CHECK(file_float(0) == value_of(layout, units, "wte.weight", 0));
  CHECK(file_float(1024 + 5) == value_of(layout, units, "wpe.weight", 5));
  CHECK(file_float(1152 + 8 + 3) == value_of(layout, units, "h.1.ln_1.weight", 3));
  CHECK(file_float(1168 + 8) == value_of(layout, units, "h.1.ln_1.bias", 0));
  CHECK(file_float(1184 + 192 + 7) == value_of(layout, units, "h.1.attn.c_attn.weight", 7));
  CHECK(file_float(1568 + 24) == value_of(layout, units, "h.1.attn.c_attn.bias", 0));
  CHECK(file_float(1616 + 64) == value_of(layout, units, "h.1.attn.c_proj.weight", 0));
  CHECK(file_float(1744 + 2) == value_of(layout, units, "h.0.attn.c_proj.bias", 2));
  CHECK(file_float(1760 + 8) == value_of(layout, units, "h.1.ln_2.weight", 0));
  CHECK(file_float(1776 + 8) == value_of(layout, units, "h.1.ln_2.bias", 0));
  CHECK(file_float(1792 + 1) == value_of(layout, units, "h.0.mlp.c_fc.weight", 1));
  CHECK(file_float(2304 + 32 + 5) == value_of(layout, units, "h.1.mlp.c_fc.bias", 5));
  CHECK(file_float(2368 + 256) == value_of(layout, units, "h.1.mlp.c_proj.weight", 0));
  CHECK(file_float(2880 + 8 + 7) == value_of(layout, units, "h.1.mlp.c_proj.bias", 7));
  CHECK(file_float(2896) == value_of(layout, units, "ln_f.weight", 0));
  CHECK(file_float(2911) == value_of(layout, units, "ln_f.bias", 7));

  const GptShape read = read_llmc_header(path);
  CHECK(read.layers == 2);
  CHECK(read.channels == 8);
  CHECK(read.padded_vocab == 128);
  CHECK(read_llmc_version(path) == 3);

  auto loaded = zero_units(layout);
  load(path, layout, loaded);
  for (std::size_t u = 0; u < units.size(); ++u) {
    REQUIRE(loaded[u].size() == units[u].size());
    CHECK(std::memcmp(loaded[u].data(), units[u].data(), units[u].size() * sizeof(float)) == 0);
  }
}

TEST_CASE("llm.c file: version 5 (bf16) round trip is within bf16 rounding", "[llmc]") {
  TempDir dir("llmc5");
  const ParamLayout layout(small_shape());
  const auto units = make_units(layout);
  const std::string path = dir.file("model_bf16.bin");
  save(path, layout, units, 5);
  REQUIRE(std::filesystem::file_size(path) == 1024 + 2 * 2912);
  CHECK(read_llmc_version(path) == 5);

  auto loaded = zero_units(layout);
  load(path, layout, loaded);
  std::size_t off_by_more = 0, not_nearest = 0;
  for (std::size_t u = 0; u < units.size(); ++u) {
    for (std::size_t i = 0; i < units[u].size(); ++i) {
      const float x = units[u][i], y = loaded[u][i];
      // bf16 keeps 8 significant bits: round to nearest is off by at most half an ulp, 2^-8 relative.
      if (std::abs(y - x) > std::ldexp(std::abs(x), -8)) ++off_by_more;
      // And it is the nearest: the bf16 neighbours one ulp up and down are no closer.
      std::uint32_t bits;
      std::memcpy(&bits, &y, 4);
      for (const std::uint32_t neighbour_bits : {bits + 0x10000u, bits - 0x10000u}) {
        float neighbour;
        std::memcpy(&neighbour, &neighbour_bits, 4);
        if (std::abs(neighbour - x) < std::abs(y - x)) ++not_nearest;
      }
    }
  }
  CHECK(off_by_more == 0);
  CHECK(not_nearest == 0);
  CHECK(loaded[0][0] == mics::bf16(units[0][0]).to_float());
}

TEST_CASE("llm.c file: bad files name the file and the problem", "[llmc]") {
  TempDir dir("llmcbad");
  const ParamLayout layout(small_shape());
  const auto units = make_units(layout);
  const std::string good = dir.file("good.bin");
  save(good, layout, units, 3);
  const std::vector<char> bytes = read_bytes(good);
  auto loaded = zero_units(layout);

  const auto with_header_int = [&](std::size_t index, std::int32_t value) {
    std::vector<char> copy = bytes;
    std::memcpy(copy.data() + 4 * index, &value, 4);
    return copy;
  };

  const std::string magic = dir.file("magic.bin");
  write_bytes(magic, with_header_int(0, 20240520));
  CHECK_THROWS_WITH(load(magic, layout, loaded), Catch::Contains(magic) && Catch::Contains("bad magic 20240520"));

  const std::string version = dir.file("version.bin");
  write_bytes(version, with_header_int(1, 4));
  CHECK_THROWS_WITH(read_llmc_header(version),
                    Catch::Contains(version) && Catch::Contains("unsupported version 4"));

  const std::string truncated = dir.file("truncated.bin");
  write_bytes(truncated, std::vector<char>(bytes.begin(), bytes.end() - 10));
  CHECK_THROWS_WITH(load(truncated, layout, loaded), Catch::Contains(truncated) && Catch::Contains("truncated"));
  const std::string header_only = dir.file("header_only.bin");
  write_bytes(header_only, std::vector<char>(bytes.begin(), bytes.begin() + 100));
  CHECK_THROWS_WITH(read_llmc_header(header_only), Catch::Contains(header_only) && Catch::Contains("truncated"));

  const std::string longer = dir.file("longer.bin");
  std::vector<char> extra = bytes;
  extra.resize(bytes.size() + 4);
  write_bytes(longer, extra);
  CHECK_THROWS_WITH(read_llmc_header(longer), Catch::Contains(longer) && Catch::Contains("size mismatch"));

  // A well-formed file of another shape: the field and both values.
  const ParamLayout wider(GptShape{2, 2, 16, 50, 128, 16});
  const std::string wide = dir.file("wide.bin");
  save(wide, wider, make_units(wider), 3);
  CHECK_THROWS_WITH(load(wide, layout, loaded), Catch::Contains(wide) && Catch::Contains("shape mismatch") &&
                                                    Catch::Contains("channels (C) is 16 in the file but 8"));

  CHECK_THROWS_WITH(save_llmc_weights(dir.file("v4.bin"), layout, [&](int u) { return units[u].data(); }, 4),
                    Catch::Contains("cannot write version 4"));
  CHECK_THROWS_WITH(read_llmc_header(dir.file("absent.bin")), Catch::Contains("absent.bin"));
}
