// A tiny check harness for the GPU tests (no Catch2: the kernel tests build on a bare GPU machine with
// CUDA alone). GPU_TEST(name) registers a case; CHECK records a failure and carries on; CHECK_REL compares
// a float result with a double reference by normwise relative error
//   max_i |got_i - want_i| / max(max_i |want_i|, 1e-30),
// which is what the error analysis of a GEMM or a reduction bounds (elementwise relative error is
// meaningless for entries that cancel to near zero). SKIP_CASE(reason) ends a case that cannot run here
// (too few GPUs, say): it is reported SKIP, never ok. run_tests() exits 77 (ctest SKIP_RETURN_CODE) when no
// CUDA device is visible, or when a case was skipped and none failed.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mics/backends/cuda/device.hpp"

namespace mics::cuda_test {

inline constexpr int kSkip = 77;

struct Case {
  const char* name;
  void (*run)();
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}
inline int& failures() {
  static int count = 0;
  return count;
}
inline bool add_case(const char* name, void (*run)()) {
  cases().push_back({name, run});
  return true;
}

// Thrown by SKIP_CASE; caught by the runners.
struct Skipped {
  std::string reason;
};

inline void check(bool ok, const char* expr, const char* file, int line, const std::string& detail = {}) {
  if (ok) return;
  ++failures();
  std::fprintf(stderr, "FAILED %s:%d: %s%s%s\n", file, line, expr, detail.empty() ? "" : ": ", detail.c_str());
}

template <class Got, class Want>
double rel_error(const std::vector<Got>& got, const std::vector<Want>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, scale = 1e-30;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    const double w = static_cast<double>(want[i]);
    if (std::isnan(g) != std::isnan(w)) return INFINITY;
    diff = std::fmax(diff, std::fabs(g - w));
    scale = std::fmax(scale, std::fabs(w));
  }
  return diff / scale;
}

// Runs every case (or those whose name contains argv[1]); 0 when all passed, 1 otherwise, 77 without a GPU.
inline int run_tests(int argc, char** argv) {
  const int devices = backends::cuda::device_count();
  if (devices == 0) {
    std::printf("SKIP: no CUDA device is visible\n");
    return kSkip;
  }
  std::printf("device: %s\n", backends::cuda::describe_device(0).c_str());
  const std::string filter = argc > 1 ? argv[1] : "";
  int ran = 0, skipped = 0;
  for (const Case& c : cases()) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    const int before = failures();
    try {
      c.run();
    } catch (const Skipped& s) {
      std::printf("SKIP %s: %s\n", c.name, s.reason.c_str());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      check(false, "exception", c.name, 0, e.what());
    }
    std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", c.name);
    ++ran;
  }
  std::printf("%d cases, %d skipped, %d failed checks\n", ran, skipped, failures());
  if (failures() != 0) return 1;
  return skipped == 0 ? 0 : kSkip;
}

}  // namespace mics::cuda_test

#define MICS_CAT_(a, b) a##b
#define MICS_CAT(a, b) MICS_CAT_(a, b)
#define GPU_TEST(name)                                                                              \
  static void name();                                                                               \
  [[maybe_unused]] static const bool MICS_CAT(name, _registered) = ::mics::cuda_test::add_case(#name, &name); \
  static void name()

#define CHECK(cond) ::mics::cuda_test::check((cond), #cond, __FILE__, __LINE__)
// Under MPI every rank must skip together (decide on values every rank shares).
#define SKIP_CASE(reason) throw ::mics::cuda_test::Skipped{(reason)}
#define CHECK_REL(got, want, bound)                                                                 \
  do {                                                                                              \
    const double mics_err_ = ::mics::cuda_test::rel_error((got), (want));                           \
    ::mics::cuda_test::check(mics_err_ <= (bound), #got " ~ " #want, __FILE__, __LINE__,            \
                             "relative error " + std::to_string(mics_err_) + " > " + std::to_string(bound)); \
  } while (0)
