# shellcheck shell=bash
# Shared by the job scripts in jobs/ (sourced, not run, with MICS_JOBS_DIR set to jobs/). It gives them:
#   mics_job_banner            job id, name, nodes and SLURM_RESTART_COUNT at the top of the log
#   mics_find_binary           sets MICS_STEP, the command that starts mics in a job step (lib/find_mics.sh:
#                              $MICS_CONTAINER, $MICS, an installed bin/mics, PATH, <repo>/build/mics)
#   mics_run_step CMD...       runs CMD (an `srun ...` line) in the background and waits for it; a
#                              SIGUSR1 or SIGTERM that reaches the batch shell is forwarded to the step
#                              as SIGUSR1 (mics: checkpoint at the next step boundary, exit 75)
#   mics_requeue_or_exit RC    exits with RC, or requeues the job when the step asked for it
#
# Why the step runs in the background: `#SBATCH --signal=B:USR1@120` signals the batch shell only, and
# bash runs a trap only between commands; `wait` returns as soon as a trapped signal arrives, so the
# trap forwards it at once. USR1 rather than TERM is forwarded because srun answers SIGTERM by killing
# the tasks with SIGKILL, with no time to checkpoint.
#
# Environment (all optional):
#   MICS                 the mics executable; MICS_CONTAINER: run it from a container image (find_mics.sh)
#   MICS_REQUEUE_CODE    the exit status that means "checkpointed, requeue me" (75, mics's own)
#   MICS_NO_REQUEUE=1    exit with the status instead of requeueing (e.g. to chain jobs by hand)

MICS_REQUEUE_CODE=${MICS_REQUEUE_CODE:-75}
MICS_STEP_PID=
MICS_SIGNAL=
MICS_SIGNAL_COUNT=0

mics_log() { echo "[$(date '+%Y-%m-%dT%H:%M:%S')] job ${SLURM_JOB_ID:-none}: $*"; }

mics_job_banner() {
  mics_log "${SLURM_JOB_NAME:-mics} on ${SLURM_JOB_NUM_NODES:-?} node(s) ${SLURM_JOB_NODELIST:-}," \
           "${SLURM_NTASKS:-?} task(s), SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}" \
           "${SLURM_ARRAY_TASK_ID:+array task $SLURM_ARRAY_TASK_ID}"
}

# shellcheck source=find_mics.sh
source "$MICS_JOBS_DIR/lib/find_mics.sh" || return 2

_mics_on_signal() {
  MICS_SIGNAL=$1
  MICS_SIGNAL_COUNT=$((MICS_SIGNAL_COUNT + 1))
  if [[ -n $MICS_STEP_PID ]] && kill -0 "$MICS_STEP_PID" 2>/dev/null; then
    mics_log "SIG$1 received: forwarding SIGUSR1 to the job step (srun pid $MICS_STEP_PID) to checkpoint"
    kill -USR1 "$MICS_STEP_PID" 2>/dev/null || true
  else
    mics_log "SIG$1 received before the job step started: the step gets it as soon as it starts"
  fi
}
trap '_mics_on_signal USR1' USR1
trap '_mics_on_signal TERM' TERM

mics_run_step() {
  mics_log "step: $*"
  "$@" &
  MICS_STEP_PID=$!
  # A signal that came before srun had started (or while it was starting) is passed on now.
  if [[ -n $MICS_SIGNAL ]]; then
    sleep 1
    kill -USR1 "$MICS_STEP_PID" 2>/dev/null || true
  fi
  local rc=0 status seen
  while :; do
    seen=$MICS_SIGNAL_COUNT
    wait "$MICS_STEP_PID"
    status=$?
    # 127: the step's status was collected by the previous wait already.
    (( status == 127 && rc > 128 )) || rc=$status
    # wait returns early (status > 128) when a trapped signal arrives: wait again for the step.
    (( status > 128 && MICS_SIGNAL_COUNT != seen )) || break
  done
  MICS_STEP_PID=
  mics_log "step exited with status $rc"
  return "$rc"
}

mics_requeue_or_exit() {
  local rc=$1 requeue=0
  if (( rc == MICS_REQUEUE_CODE )); then
    requeue=1
  elif [[ -n $MICS_SIGNAL ]] && (( rc != 0 )); then
    mics_log "after SIG$MICS_SIGNAL the step exited with $rc, not $MICS_REQUEUE_CODE: no checkpoint was" \
             "reported, so the job is not requeued" >&2
  fi
  if (( requeue )) && [[ -n ${SLURM_JOB_ID:-} && ${MICS_NO_REQUEUE:-0} != 1 ]]; then
    mics_log "checkpoint written: requeueing (restart $(( ${SLURM_RESTART_COUNT:-0} + 1 )))," \
             "the next run resumes from the latest checkpoint"
    if scontrol requeue "$SLURM_JOB_ID"; then
      exit 0
    fi
    mics_log "scontrol requeue failed (job not requeueable, or MaxBatchRequeue reached): exiting with $MICS_REQUEUE_CODE" >&2
    exit "$MICS_REQUEUE_CODE"
  fi
  (( requeue )) && exit "$MICS_REQUEUE_CODE"
  exit "$rc"
}
