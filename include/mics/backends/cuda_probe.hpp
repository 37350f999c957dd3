// What the CUDA runtime and NCCL report on this machine (built only when MICS_WITH_CUDA).
#pragma once
#include <string>

namespace mics::cuda {
struct DeviceInfo {
  int device_count = 0;
  int nccl_version = 0;
  std::string name;
  bool kernel_ok = false;  // a kernel and a cuBLAS call ran and gave the right numbers
};
DeviceInfo probe();
}  // namespace mics::cuda
