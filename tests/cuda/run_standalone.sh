#!/usr/bin/env bash
# On a GPU machine that has only the CUDA toolkit and CMake (no MPI, HDF5 or Boost): build the CUDA backend,
# its kernel tests and the GPU benchmark (tests/cuda as a project of its own), run the tests, then the
# benchmark table (bench/gpu/run_gpu_bench.sh).
#   tests/cuda/run_standalone.sh [BUILD_DIR] [bench_gpu options...]
# CUDA_ARCHITECTURES overrides the GPU architectures (default: the visible GPUs' compute capabilities, else
# the build's default, cmake/MicsCudaArchitectures.cmake).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-gpu}
shift || true
if [[ -z "${CUDA_ARCHITECTURES:-}" ]]; then
  # "9.0" -> 90 (CMake's "native" would need CMake 3.24)
  CUDA_ARCHITECTURES=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
                       tr -d '. ' | sort -u | paste -sd ';' || true)
fi
arch_args=()
if [[ -n "$CUDA_ARCHITECTURES" ]]; then arch_args=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHITECTURES"); fi
cmake -S "$root/tests/cuda" -B "$build" ${arch_args[@]+"${arch_args[@]}"}
cmake --build "$build" -j "$(nproc)"
status=0
ctest --test-dir "$build" --output-on-failure || status=$?
"$root/bench/gpu/run_gpu_bench.sh" "$build" "$@" || status=$?
exit "$status"
