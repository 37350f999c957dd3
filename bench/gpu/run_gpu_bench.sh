#!/usr/bin/env bash
# GPU benchmark: tokens/s, MFU and device time per op of the CUDA backend on one GPU, for GPT-2 124M and
# a 1.3B model, in bf16 tensor-core mode and (124M only) exact fp32 for comparison.
#   bench/gpu/run_gpu_bench.sh [BUILD_DIR] [extra bench_gpu options...]
# BUILD_DIR defaults to build (configure with -DMICS_CUDA=ON or AUTO on a machine with nvcc). Output goes
# to stdout and to BUILD_DIR/bench_gpu.txt.
set -euo pipefail
build=${1:-build}
shift || true
bin="$build/bench_gpu"
if [[ ! -x "$bin" ]]; then
  echo "run_gpu_bench: $bin not found: cmake -S . -B $build -DMICS_CUDA=ON && cmake --build $build --target bench_gpu" >&2
  exit 2
fi
out="$build/bench_gpu.txt"
rc=0
{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader 2>/dev/null || true
  "$bin" --models gpt2-124m,gpt-1.3b --precision bf16 "$@" &&
    "$bin" --models gpt2-124m --precision fp32 --steps 5 "$@"
} | tee "$out" || rc=$?  # bench_gpu's status (pipefail); set -e does not apply under ||
if [[ $rc -eq 77 ]]; then
  echo "run_gpu_bench: no CUDA device on this machine" >&2
fi
exit "$rc"
