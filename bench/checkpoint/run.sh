#!/usr/bin/env bash
# Checkpoint benchmark: in one run, the sequential write rate of the checkpoint directory's file system
# (dd, O_DIRECT) and the checkpoint write rate and training stall of `mics train` with inputs/gpt2-124m.ini
# (1.5 GB of state per checkpoint: fp32 parameters, Adam m and v) at 1, 4 and 8 ranks.
#
#   bench/checkpoint/run.sh [options] [-- extra `mics train` options]
#
# Options (defaults in brackets):
#   --mics PATH        the mics executable [build/mics]
#   --dir DIR          work folder: the checkpoint directory, data, logs, metrics and results [build/bench-checkpoint];
#                      point it at the file system to measure (e.g. /fsx/bench-checkpoint)
#   --ranks "1 4 8"    rank counts, one training each; above 1 rank: parallel.partition_size = 2 and
#                      topology.ranks_per_node = 2 (MiCS, emulated nodes of 2 ranks)
#   --dd-mb MB         size of the dd test file, MiB, a multiple of 16 [2048]
#   --steps N          training steps per run [3]; --every K: a checkpoint every K steps [1] (and after the last)
#   --seq-len T        sequence length [64]; micro-batch 1, so a step stays short on a CPU
#   --timeout S        limit per training, seconds [900]
#   --keep             keep the checkpoints afterwards (by default each training's are removed once their
#                      sizes are recorded, so the disk holds at most one training's: 3 x 1.6 GB)
# Extra `mics train` options after `--` go to every training, e.g. -- --model.preset=tiny.
#
# Output: the table of bench/checkpoint/summarize.py (one row per rank count, then every checkpoint) on
# stdout and in DIR/results.txt, the same as JSON in DIR/results.json; each training's console log in
# DIR/logs/np<N>.log. Column definitions: summarize.py's docstring and docs/benchmarks.md#checkpoints.
# The numbers depend on the machine and on whatever else writes to the same disk: compare rows of one run.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$here/../.." && pwd)
mics=$repo/build/mics
dir=$repo/build/bench-checkpoint
ranks="1 4 8"
dd_mb=2048
steps=3
every=1
seq_len=64
limit=900
keep=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --mics) mics=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --dd-mb) dd_mb=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --seq-len) seq_len=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
done
extra=("$@")
if [[ ! -x $mics ]]; then
  echo "run.sh: no mics executable at $mics (cmake --build build --target mics, or --mics PATH)" >&2
  exit 2
fi
if (( dd_mb < 16 || dd_mb % 16 != 0 )); then
  echo "run.sh: --dd-mb must be a positive multiple of 16, not $dd_mb" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd -- "$dir" && pwd)
ckpt=$dir/checkpoints
mkdir -p "$ckpt" "$dir/logs" "$dir/runs"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores: idle ranks must yield.
export OMPI_MCA_mpi_yield_when_idle=1

# df names ext4 (stat -f says ext2/ext3); stat -f names lustre.
fs_type=$(df -P -T "$ckpt" 2>/dev/null | awk 'NR == 2 {print $2}')
[[ -n $fs_type ]] || fs_type=$(stat -f -c %T "$ckpt" 2>/dev/null || echo unknown)
echo "# checkpoint benchmark: $(date '+%Y-%m-%dT%H:%M:%S'), $(hostname), $(nproc) cores," \
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory"
echo "# checkpoint directory $ckpt (file system $fs_type)"

# (a) The disk: sequential 16 MiB writes that bypass the page cache, synced before dd reports.
dd_file=$ckpt/ddtest
dd_note="bs=16M count=$((dd_mb / 16)) oflag=direct conv=fsync"
dd_args=(if=/dev/zero "of=$dd_file" bs=16M "count=$((dd_mb / 16))" oflag=direct conv=fsync)
if ! dd_out=$(dd "${dd_args[@]}" 2>&1); then
  # tmpfs and some network file systems refuse O_DIRECT: measure through the page cache, synced.
  echo "# dd with oflag=direct failed ($(tail -n 1 <<<"$dd_out")): measuring without it" >&2
  dd_note="bs=16M count=$((dd_mb / 16)) conv=fsync (no O_DIRECT on this file system)"
  dd_out=$(dd if=/dev/zero "of=$dd_file" bs=16M "count=$((dd_mb / 16))" conv=fsync 2>&1) || {
    rm -f "$dd_file"; echo "run.sh: dd failed: $dd_out" >&2; exit 1; }
fi
rm -f "$dd_file"
# "2147483648 bytes (2.1 GB, 2.0 GiB) copied, 3.14 s, 684 MB/s"
dd_line=$(grep -E '^[0-9]+ bytes' <<<"$dd_out" | tail -n 1)
dd_bytes=$(awk '{print $1}' <<<"$dd_line")
dd_seconds=$(sed -E 's/.*copied, ([0-9.e+-]+) s,.*/\1/' <<<"$dd_line")
echo "# dd: $dd_line"

# (b) Trainings. The corpus: gpt2-124m's vocabulary (50257), a few shards of synthetic tokens.
data=$dir/data
if ! compgen -G "$data/train_*.bin" >/dev/null; then
  "$mics" data synth "$data" --vocab 50257 --tokens 200000 --force >"$dir/logs/data.log" 2>&1 ||
    { cat "$dir/logs/data.log" >&2; exit 1; }
fi

runs=()
for n in $ranks; do
  name=ckpt-np$n
  rm -rf "${ckpt:?}/$name" "$dir/runs/$name"
  layout=()
  if (( n > 1 )); then
    layout=(--parallel.partition_size=2 --topology.ranks_per_node=2)
  fi
  log=$dir/logs/np$n.log
  echo "# training: $n rank(s)${layout[*]:+ ${layout[*]}}, log $log"
  start=$(date +%s)
  rc=0
  # One thread per rank when ranks share the cores; log_every = 1: the summary reads every step's line.
  OMP_NUM_THREADS=$(( n > 1 ? 1 : $(nproc) )) OPENBLAS_NUM_THREADS=1 \
  timeout "$limit" mpirun --oversubscribe --allow-run-as-root --bind-to none -np "$n" \
      "$mics" train --deck "$repo/inputs/gpt2-124m.ini" \
      --run.name="$name" --run.dir="$dir/runs" --checkpoint.dir="$ckpt" \
      --data.train="$data/train_*.bin" --data.val="$data/val_*.bin" \
      --backend.device=cpu --backend.matmul=fp32 --train.resume=never --train.micro_batch=1 --train.grad_accum=1 \
      --model.seq_len="$seq_len" --train.steps="$steps" --train.warmup_steps=1 --train.val_every=0 \
      --train.log_every=1 --checkpoint.every_steps="$every" --checkpoint.every_minutes=0 \
      --checkpoint.keep="$steps" --checkpoint.keep_every=0 "${layout[@]}" "${extra[@]}" >"$log" 2>&1 || rc=$?
  echo "#   exit status $rc after $(( $(date +%s) - start )) s"
  if (( rc != 0 )); then
    tail -n 20 "$log" >&2
  fi
  # The sizes of its checkpoints, then (unless --keep) the checkpoints go: at most one run's on the disk.
  sizes=$dir/logs/np$n.sizes.json
  python3 "$here/summarize.py" --save-sizes "$ckpt/$name" "$sizes"
  if (( ! keep )); then
    rm -rf "${ckpt:?}/$name"
  fi
  runs+=("$n:$log:$dir/runs/$name/metrics.jsonl:$sizes")
done

rc=0
python3 "$here/summarize.py" --dd-bytes "$dd_bytes" --dd-seconds "$dd_seconds" --dd-note "$dd_note" \
    --json "$dir/results.json" "${runs[@]}" | tee "$dir/results.txt" || rc=$?
exit "$rc"
