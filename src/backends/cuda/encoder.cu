// Token + position embedding, forward and a deterministic backward (no atomics: dwte is summed per token
// bucket in a fixed order, dwpe per position over the batch in order). The buckets are built on the device
// (CUB's stable radix sort, run-length encode and scan), so the backward needs no host round trip.
#include <cub/cub.cuh>

#include <algorithm>

#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

// one thread per output element of out (B,T,C)
__global__ void encoder_forward_kernel(float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                                       int T, int C, std::size_t total) {
  MICS_GRID_STRIDE(i, total) {
    const std::size_t bt = i / static_cast<std::size_t>(C);
    const int c = static_cast<int>(i % static_cast<std::size_t>(C));
    const int t = static_cast<int>(bt % static_cast<std::size_t>(T));
    const std::size_t token = static_cast<std::size_t>(inp[bt]);
    out[i] = wte[token * C + c] + wpe[static_cast<std::size_t>(t) * C + c];
  }
}

__global__ void iota_kernel(std::int32_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i;
}

// grid (N, ceil(C/block)): bucket u < *runs holds token tokens[u] at the positions
// positions[offsets[u] .. offsets[u] + counts[u]), ascending; thread c sums dout[., c] over them in order.
// Blocks past the number of runs (known only on the device) return at once.
__global__ void encoder_backward_wte_kernel(float* dwte, const float* dout, const std::int32_t* tokens,
                                            const std::int32_t* counts, const std::int32_t* offsets,
                                            const std::int32_t* positions, const std::int32_t* runs, int C) {
  const int u = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (u >= *runs || c >= C) return;
  const int begin = offsets[u];
  const int end = begin + counts[u];
  float sum = 0.0f;
  for (int k = begin; k < end; ++k) sum += dout[static_cast<std::size_t>(positions[k]) * C + c];
  dwte[static_cast<std::size_t>(tokens[u]) * C + c] += sum;
}

// The scratch of encoder_backward_wte: six int32 arrays of N, the run count, then CUB's temporary storage.
struct EncoderScratch {
  std::int32_t *ids_sorted, *positions_in, *positions, *tokens, *counts, *offsets, *runs;
  void* cub_temp;
  std::size_t cub_bytes;
};

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// The largest temporary storage the three CUB passes need for N items (a size query: no launch).
std::size_t cub_temp_bytes(int N) {
  std::size_t sort = 0, encode = 0, scan = 0;
  const std::int32_t* in = nullptr;
  std::int32_t* out = nullptr;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort, in, out, in, out, N));
  CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(nullptr, encode, in, out, out, out, N));
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan, in, out, N));
  return std::max(sort, std::max(encode, scan));
}

// The six arrays and the run count before CUB's storage: the fixed part of the workspace.
std::size_t encoder_arrays_bytes(int N) {
  return 6 * align_up(static_cast<std::size_t>(N) * sizeof(std::int32_t)) + kAlign;
}

EncoderScratch carve_encoder_scratch(void* workspace, std::size_t workspace_bytes, int N) {
  auto* base = static_cast<unsigned char*>(workspace);
  const std::size_t array = align_up(static_cast<std::size_t>(N) * sizeof(std::int32_t));
  EncoderScratch s{};
  std::int32_t** arrays[] = {&s.ids_sorted, &s.positions_in, &s.positions, &s.tokens, &s.counts, &s.offsets};
  for (std::int32_t** a : arrays) {
    *a = reinterpret_cast<std::int32_t*>(base);
    base += array;
  }
  s.runs = reinterpret_cast<std::int32_t*>(base);
  base += kAlign;
  s.cub_temp = base;
  s.cub_bytes = workspace_bytes - encoder_arrays_bytes(N);  // sized by encoder_backward_workspace_bytes
  return s;
}

// one thread per (t, c): sum over b in order
__global__ void encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T, int C) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t TC = static_cast<std::size_t>(T) * C;
  if (i >= TC) return;
  float sum = 0.0f;
  for (int b = 0; b < B; ++b) sum += dout[static_cast<std::size_t>(b) * TC + i];
  dwpe[i] += sum;
}

}  // namespace

void encoder_forward(cudaStream_t stream, float* out, const std::int32_t* inp, const float* wte, const float* wpe,
                     int B, int T, int C) {
  const std::size_t total = static_cast<std::size_t>(B) * T * C;
  encoder_forward_kernel<<<grid_stride_blocks(total), kBlock, 0, stream>>>(out, inp, wte, wpe, T, C, total);
  CUDA_CHECK_LAUNCH();
}

std::size_t encoder_backward_workspace_bytes(int N) {
  if (N <= 0) return 0;
  return encoder_arrays_bytes(N) + cub_temp_bytes(N);
}

void encoder_backward_wte(cudaStream_t stream, float* dwte, const float* dout, const std::int32_t* inp, int N, int C,
                          void* workspace, std::size_t workspace_bytes) {
  if (N <= 0 || C <= 0) return;
  EncoderScratch s = carve_encoder_scratch(workspace, workspace_bytes, N);
  iota_kernel<<<blocks_for(static_cast<std::size_t>(N)), kBlock, 0, stream>>>(s.positions_in, N);
  CUDA_CHECK_LAUNCH();
  // Stable: positions of one token stay ascending, so each bucket is summed in position order.
  std::size_t bytes = s.cub_bytes;
  const std::int32_t* positions_in = s.positions_in;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s.cub_temp, bytes, inp, s.ids_sorted, positions_in, s.positions, N, 0,
                                             static_cast<int>(sizeof(std::int32_t) * 8), stream));
  // Encode writes counts only for the runs; the scan reads all N, so the rest must be defined (0).
  CUDA_CHECK(cudaMemsetAsync(s.counts, 0, static_cast<std::size_t>(N) * sizeof(std::int32_t), stream));
  const std::int32_t* ids_sorted = s.ids_sorted;  // the argument types of the size query (cub_temp_bytes)
  const std::int32_t* counts = s.counts;
  bytes = s.cub_bytes;
  CUDA_CHECK(cub::DeviceRunLengthEncode::Encode(s.cub_temp, bytes, ids_sorted, s.tokens, s.counts, s.runs, N, stream));
  bytes = s.cub_bytes;
  CUDA_CHECK(cub::DeviceScan::ExclusiveSum(s.cub_temp, bytes, counts, s.offsets, N, stream));
  // At most N buckets: the grid covers them all, the kernel reads how many there are.
  const dim3 grid(static_cast<unsigned int>(N), blocks_for(static_cast<std::size_t>(C)));
  encoder_backward_wte_kernel<<<grid, kBlock, 0, stream>>>(dwte, dout, s.tokens, s.counts, s.offsets, s.positions,
                                                           s.runs, C);
  CUDA_CHECK_LAUNCH();
}

void encoder_backward_wpe(cudaStream_t stream, float* dwpe, const float* dout, int B, int T, int C) {
  const std::size_t TC = static_cast<std::size_t>(T) * C;
  if (TC == 0 || B == 0) return;  // a grid of zero blocks is a launch error
  encoder_backward_wpe_kernel<<<blocks_for(TC), kBlock, 0, stream>>>(dwpe, dout, B, T, C);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
