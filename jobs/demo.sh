#!/usr/bin/env bash
# The demo behind `make run`: the tiny GPT trained with MiCS on 4 ranks emulating 2 nodes (p = 2, r = 2)
# on a synthetic Markov corpus whose true entropy is known, then a short summary, the checkpoint it keeps
# (written after the last step), a sample of text from it, and a plot of the run (runs/demo/plot.png).
# Usage: jobs/demo.sh [path/to/mics] [extra --section.key=value options]
# Without a path, mics is found as the job scripts find it (jobs/lib/find_mics.sh: $MICS, $MICS_CONTAINER,
# the installed bin/mics, PATH, build/mics). In a source tree the demo runs at the top of the tree; an
# installed demo (share/mics/jobs/demo.sh) runs in the current directory with the installed decks.
set -euo pipefail
MICS_JOBS_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/find_mics.sh
source "$MICS_JOBS_DIR/lib/find_mics.sh"
if [[ $# -gt 0 && $1 != -* ]]; then
  MICS=$1
  [[ $MICS != */* ]] || MICS=$(cd "$(dirname "$MICS")" && pwd)/$(basename "$MICS")
  unset MICS_CONTAINER
  shift
fi
if [[ -f $MICS_JOBS_DIR/../CMakeLists.txt ]]; then
  cd "$MICS_JOBS_DIR/.."
  inputs=inputs
else
  inputs=$(cd "$MICS_JOBS_DIR/../inputs" && pwd)
fi
mics_find_binary
if [[ ${MICS_STEP[0]} == --container* ]]; then
  echo "demo.sh runs mpirun on this host: use MICS_CONTAINER_RUNTIME=apptainer (pyxis needs srun)" >&2
  exit 2
fi

export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

data=data/synth
if [ ! -f "$data/entropy.txt" ]; then
  mkdir -p data
  "${MICS_STEP[@]}" data synth "$data" --tokens 1000000 --force | tee "$data.log"
  grep '^entropy floor:' "$data.log" > "$data/entropy.txt"
  rm -f "$data.log"
fi
floor=$(awk '{print $3}' "$data/entropy.txt")

log=runs/demo.log
mkdir -p runs
rm -f runs/demo/metrics.jsonl
mpirun -np 4 --bind-to none "${MICS_STEP[@]}" train --deck "$inputs/demo.ini" --train.resume=never "$@" 2>&1 | tee "$log"

python3 - "$floor" runs/demo/metrics.jsonl <<'PY'
import json, sys
floor = float(sys.argv[1])
rows = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
steps = [r for r in rows if "loss" in r]
vals = [r["val_loss"] for r in rows if "val_loss" in r]
last = steps[-1]
tokens_per_s = sorted(r["tokens_per_s"] for r in steps)[len(steps) // 2]
print("\n=== demo summary: tiny GPT, mics p=2 r=2 on 4 ranks as 2 emulated nodes ===")
print("entropy floor      %.4f nats/token (the loss of a perfect model)" % floor)
print("final train loss   %.4f   (gap %.4f)" % (last["loss"], last["loss"] - floor))
if vals:
    print("final val loss     %.4f   (gap %.4f)" % (vals[-1], vals[-1] - floor))
print("throughput         %.0f tokens/s (median step)" % tokens_per_s)
print("MFU                %.2f%% (last step; the peak is named in the log)" % (100 * last.get("mfu", 0)))
print("traffic per optimizer step on rank 0 (bytes sent, collectives):")
for kind, t in last["traffic"].items():
    if t["participants"] > 1 and t["collectives"] > 0:
        print("  %-12s %10d B in %3d collectives over %d ranks (%d B off-node)" %
              (kind, t["bytes_sent"], t["collectives"], t["participants"], t["bytes_sent_off_node"]))
PY

latest=$(cat checkpoints/demo/latest 2>/dev/null || true)
if [ -n "$latest" ]; then
  ckpt=checkpoints/demo/$latest
  echo "checkpoint kept    $ckpt (written after the last step)"
  shown="${MICS_STEP[*]}"
  echo "  resume:          mpirun -np 4 $shown train --deck $inputs/demo.ini --train.steps=600"
  echo "  export:          $shown export $ckpt --format safetensors out/demo/model.safetensors"
  # The corpus is a Markov chain over 256 byte states, not text: show the sampled tokens as ids.
  echo "  sample:          $shown sample checkpoints/demo --prompt-ids 97 -n 24 --temperature 0.8 --top-k 20 --ids"
  "${MICS_STEP[@]}" sample checkpoints/demo --prompt-ids 97 -n 24 --temperature 0.8 --top-k 20 --ids | grep '^ids:' |
    sed 's/^/                   /'
fi

# The plot needs matplotlib (`make run` installs Debian's python3-matplotlib when it can).
plotted=no
for python in python3 /usr/bin/python3; do
  if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import matplotlib' 2>/dev/null; then
    "$python" bench/plot_runs.py runs/demo -o runs/demo/plot.png --title "mics demo: tiny GPT, p=2 r=2 on 4 ranks" \
      && plotted=yes
    break
  fi
done
[ "$plotted" = yes ] || echo "plot: skipped (no Python with matplotlib: apt-get install python3-matplotlib)"
