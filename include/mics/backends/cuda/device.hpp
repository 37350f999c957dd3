// Which GPU this process uses. Needs only the CUDA runtime.
#pragma once
#include <cstddef>
#include <string>

namespace mics::backends::cuda {

// Visible devices; 0 when there is no driver or no GPU (cudaGetDeviceCount's error is cleared, not thrown).
int device_count();
// The node-local rank from the launcher's environment: OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID,
// MPI_LOCALRANKID or PMI_LOCAL_RANK (the first set); 0 when none is.
int local_rank_from_env();
// local_rank_from_env() modulo device_count(); throws mics::Error when no device is visible.
int device_for_this_process();
// The datasheet's dense peak of a known GPU for MFU: bf16 tensor cores (bf16 = true) or fp32 (CUDA cores;
// TF32 is not used); 0 when the GPU is not in the table. `name` receives the device name.
double datasheet_peak_flops(int device, bool bf16, std::string& name);
// Bytes in use on the device (cudaMemGetInfo: total - free, every process on it).
std::size_t device_memory_used(int device);
// Free memory on `device` (cudaMemGetInfo).
std::size_t device_memory_free(int device);
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)"
std::string describe_device(int device);

}  // namespace mics::backends::cuda
