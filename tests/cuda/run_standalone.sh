#!/usr/bin/env bash
# On a GPU machine that has only the CUDA toolkit and CMake (no MPI, HDF5 or Boost): build the CUDA backend,
# its kernel tests and the GPU benchmark (tests/cuda as a project of its own), run the tests, then the
# benchmark table (bench/gpu/run_gpu_bench.sh).
#   tests/cuda/run_standalone.sh [BUILD_DIR] [bench_gpu options...]
# CUDA_ARCHITECTURES overrides the GPU architectures (default: the visible GPU's, else 80;90).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-gpu}
shift || true
if [[ -z "${CUDA_ARCHITECTURES:-}" ]]; then
  if nvidia-smi -L >/dev/null 2>&1; then CUDA_ARCHITECTURES=native; else CUDA_ARCHITECTURES="80;90"; fi
fi
cmake -S "$root/tests/cuda" -B "$build" -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHITECTURES"
cmake --build "$build" -j "$(nproc)"
status=0
ctest --test-dir "$build" --output-on-failure || status=$?
"$root/bench/gpu/run_gpu_bench.sh" "$build" "$@" || status=$?
exit "$status"
