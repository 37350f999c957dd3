#pragma once

namespace mics::backends {

// Hyper-parameters of one AdamW update (decoupled weight decay).
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  int step;  // 1-based: bias correction uses beta^step
};

}  // namespace mics::backends
