// AdamW on the CPU: the optimizer step over one flat shard of fp32 parameters.
#pragma once
#include <cstddef>
#include <cstdint>

#include "mics/backends/backend.hpp"

namespace mics::backends::cpu {

// One AdamW step over n elements, in place on params, m and v:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd*p)
// Weight decay is decoupled (applied to p, not added to g). One pass over memory, OpenMP-parallel.
void adamw(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& hp);

// How many of the n elements the same update would leave with a parameter or moment that is not finite;
// reads only.
std::uint64_t adamw_count_nonfinite(const float* params, const float* grads, const float* m, const float* v,
                                    std::size_t n, const AdamWStep& hp);

}  // namespace mics::backends::cpu
