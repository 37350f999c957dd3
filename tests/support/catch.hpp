// Catch2 v2 or v3, whichever CMake found (it defines MICS_CATCH2_V3 for v3): the tests include this
// header instead of Catch2's and use the v2 spellings, which v3 gets here:
//   Approx (v3: Catch::Approx), Catch::Contains (v3: Catch::Matchers::ContainsSubstring).
#pragma once

#if defined(MICS_CATCH2_V3)
#include <catch2/catch_all.hpp>

#include <string>

namespace Catch {
inline Matchers::StringContainsMatcher Contains(const std::string& text,
                                                CaseSensitive sensitivity = CaseSensitive::Yes) {
  return Matchers::ContainsSubstring(text, sensitivity);
}
}  // namespace Catch
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
