// GPT-2 initialisation, reproducible from (seed, unit) alone: every element's value is a pure function of
// (seed, unit, element index) (a counter-based generator), so it does not depend on thread count, on the
// order units are initialised, or on which rank does it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mics/model/gpt.hpp"
#include "mics/util/error.hpp"
#include "mics/util/splitmix.hpp"

namespace mics::model {
namespace {

// Uniform in (0, 1]: 53 random bits, never 0 so the log below is finite.
double unit_uniform(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53; }

// Standard normal number `index` of the stream `key` (Box-Muller; pairs share their two uniforms).
float standard_normal(std::uint64_t key, std::uint64_t index) {
  const std::uint64_t pair = index >> 1;
  const double u1 = unit_uniform(splitmix64(key ^ splitmix64(2 * pair)));
  const double u2 = unit_uniform(splitmix64(key ^ splitmix64(2 * pair + 1)));
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double angle = 6.283185307179586 * u2;
  return static_cast<float>((index & 1) ? r * std::sin(angle) : r * std::cos(angle));
}

}  // namespace

void Gpt::init_unit(int unit, float* unit_params, std::uint64_t seed) const {
  init_unit_range(unit, unit_params, seed, 0, SIZE_MAX);
}

void Gpt::init_unit_range(int unit, float* out, std::uint64_t seed, std::size_t begin, std::size_t end) const {
  const auto& units = layout_.units();
  if (unit < 0 || unit >= static_cast<int>(units.size())) {
    throw InputError("init_unit: unit " + std::to_string(unit) + " out of range [0, " + std::to_string(units.size()) + ")");
  }
  const GptShape& shape = layout_.shape();
  const float std_dev = 0.02f;
  const float residual_std = std_dev / std::sqrt(2.0f * static_cast<float>(shape.layers));
  // Generated on the host in chunks, then copied into backend memory.
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  std::vector<float> host;
  for (int index : units[unit].tensors) {
    const TensorInfo& t = layout_.tensors()[index];
    const std::uint64_t key = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(unit) * 1000003ull + index));
    enum class Fill { Normal, One, Zero } kind = Fill::Normal;
    float sd = std_dev;
    if (t.name.ends_with("bias")) kind = Fill::Zero;
    if (t.name.ends_with("ln_1.weight") || t.name.ends_with("ln_2.weight") || t.name == "ln_f.weight") kind = Fill::One;
    if (t.name.ends_with("c_proj.weight")) sd = residual_std;
    // wte rows V..Vp-1 are padding: zero
    const std::size_t normal_end = t.name == "wte.weight" ? static_cast<std::size_t>(shape.vocab) * shape.channels : t.numel;
    // this tensor's elements inside [begin, end), tensor-local
    const std::size_t first = std::max(begin, t.offset) - t.offset;
    const std::size_t last = std::min(end, t.offset + t.numel);
    if (last <= t.offset + first) continue;
    const std::size_t stop = last - t.offset;
    for (std::size_t chunk = first; chunk < stop; chunk += kChunk) {
      const std::size_t count = std::min(kChunk, stop - chunk);
      host.resize(count);
      const auto n = static_cast<std::int64_t>(count);
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; i++) {
        const std::size_t element = chunk + static_cast<std::size_t>(i);
        float value = 0.0f;
        if (kind == Fill::One) value = 1.0f;
        if (kind == Fill::Normal && element < normal_end) value = sd * standard_normal(key, element);
        host[static_cast<std::size_t>(i)] = value;
      }
      backend_.copy_from_host(out + (t.offset + chunk - begin), host.data(), count * sizeof(float));
    }
  }
}

}  // namespace mics::model
