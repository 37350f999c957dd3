// bfloat16: the top 16 bits of an IEEE float. Conversion from float rounds to nearest, ties to even;
// NaN stays NaN (quieted). Trivially copyable, so buffers of bf16 go straight to MPI and files.
#pragma once
#include <bit>
#include <cstdint>

namespace mics {

struct bf16 {
  std::uint16_t bits = 0;

  constexpr bf16() = default;
  constexpr explicit bf16(float value) : bits(round_from_float(value)) {}
  constexpr explicit operator float() const { return to_float(); }
  constexpr float to_float() const { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

  static constexpr bf16 from_bits(std::uint16_t raw) {
    bf16 value;
    value.bits = raw;
    return value;
  }

  static constexpr std::uint16_t round_from_float(float value) {
    const std::uint32_t word = std::bit_cast<std::uint32_t>(value);
    if ((word & 0x7F800000u) == 0x7F800000u && (word & 0x007FFFFFu) != 0) {
      return static_cast<std::uint16_t>((word >> 16) | 0x0040u);  // keep a NaN a NaN
    }
    // Adding 0x7FFF plus the lowest kept bit rounds half-way cases to the even neighbour; a carry
    // into the exponent is the correct round-up (up to infinity).
    const std::uint32_t rounding = 0x7FFFu + ((word >> 16) & 1u);
    return static_cast<std::uint16_t>((word + rounding) >> 16);
  }

  friend constexpr bool operator==(bf16 a, bf16 b) { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2);

}  // namespace mics
