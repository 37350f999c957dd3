// Flat-buffer ops on parameter, gradient and optimizer shards, and the residual add.
#include "common.cuh"
#include "mics/backends/cuda/check.hpp"
#include "mics/backends/cuda/kernels.hpp"

namespace mics::backends::cuda {
namespace {

constexpr int kSumBlocks = 1024;  // fixed grid of the first sum_squares pass: a fixed summation order

__global__ void fill_kernel(float* x, std::size_t n, float value) {
  MICS_GRID_STRIDE(i, n) { x[i] = value; }
}
__global__ void axpy_kernel(float* y, float a, const float* x, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { y[i] += a * x[i]; }
}
__global__ void scale_kernel(float* x, float a, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { x[i] *= a; }
}
__global__ void add_kernel(float* out, const float* a, const float* b, std::size_t n) {
  MICS_GRID_STRIDE(i, n) { out[i] = a[i] + b[i]; }
}

// partial[block] = sum over the block's grid-stride elements of x^2, in double
__global__ void sum_squares_partial_kernel(double* partial, const float* x, std::size_t n) {
  __shared__ double shared[kWarp];
  double acc = 0.0;
  MICS_GRID_STRIDE(i, n) {
    const double value = x[i];
    acc += value * value;
  }
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_squares_final_kernel(double* result, const double* partial, int count) {
  __shared__ double shared[kWarp];
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *result = acc;
}

}  // namespace

void fill(cudaStream_t stream, float* x, std::size_t n, float value) {
  if (n == 0) return;
  fill_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(x, n, value);
  CUDA_CHECK_LAUNCH();
}

void axpy(cudaStream_t stream, float* y, float a, const float* x, std::size_t n) {
  if (n == 0) return;
  axpy_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(y, a, x, n);
  CUDA_CHECK_LAUNCH();
}

void scale(cudaStream_t stream, float* x, float a, std::size_t n) {
  if (n == 0) return;
  scale_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(x, a, n);
  CUDA_CHECK_LAUNCH();
}

void add(cudaStream_t stream, float* out, const float* a, const float* b, std::size_t n) {
  if (n == 0) return;
  add_kernel<<<grid_stride_blocks(n), kBlock, 0, stream>>>(out, a, b, n);
  CUDA_CHECK_LAUNCH();
}

std::size_t sum_squares_workspace() { return kSumBlocks; }

void sum_squares(cudaStream_t stream, double* result, const float* x, std::size_t n, double* workspace) {
  sum_squares_partial_kernel<<<kSumBlocks, kBlock, 0, stream>>>(workspace, x, n);
  CUDA_CHECK_LAUNCH();
  sum_squares_final_kernel<<<1, 1024, 0, stream>>>(result, workspace, kSumBlocks);
  CUDA_CHECK_LAUNCH();
}

}  // namespace mics::backends::cuda
