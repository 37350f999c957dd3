#!/usr/bin/env bash
# Stops the daemons start_cluster.sh started, and only those: the pids listed in RUN_DIR/pids get
# SIGTERM, then SIGKILL after a grace period. Safe to run twice, or after a failed start.
#   tests/slurm/stop_cluster.sh RUN_DIR [GRACE_SECONDS]
set -uo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 RUN_DIR [GRACE_SECONDS]" >&2
  exit 2
fi
RUN_DIR=$1
GRACE=${2:-10}
[[ -f $RUN_DIR/pids ]] || exit 0

# Jobs still in the cluster are cancelled first, so their job steps end with them.
if [[ -f $RUN_DIR/etc/slurm.conf ]] && command -v squeue >/dev/null 2>&1; then
  export SLURM_CONF=$RUN_DIR/etc/slurm.conf
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null)
  if [[ -n $jobs ]]; then
    # shellcheck disable=SC2086
    timeout 10 scancel $jobs 2>/dev/null
    deadline=$((SECONDS + GRACE))
    while [[ -n $(timeout 5 squeue -h -o %A 2>/dev/null) ]] && (( SECONDS < deadline )); do sleep 0.2; done
  fi
fi

pids=()
# slurmds first, then the controller, then munged: the reverse of the start order.
while read -r name pid; do
  [[ $pid =~ ^[0-9]+$ ]] || continue
  # Only a process that still runs the daemon we started (a recycled pid is left alone).
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "${name%%-*}"; then
    pids=("$pid" "${pids[@]}")
  fi
done < "$RUN_DIR/pids"

for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
deadline=$((SECONDS + GRACE))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "stop_cluster: $pid did not stop after ${GRACE}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
done
: > "$RUN_DIR/pids"
exit 0
