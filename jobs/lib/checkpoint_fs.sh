# shellcheck shell=bash
# The checkpoint directory on a parallel file system (FSx for Lustre on ParallelCluster, any Lustre, NFS),
# sourced by the training job scripts after requeue.sh (which gives mics_log). It gives them:
#   HDF5_USE_FILE_LOCKING=FALSE   exported unless already set (below)
#   mics_checkpoint_dir DECK [ARGS...]
#                                 prints the checkpoint.dir a `mics train --deck DECK ARGS...` would use: the
#                                 last --checkpoint.dir= among ARGS, else the deck's [checkpoint] dir, else
#                                 `checkpoints` (relative paths are relative to the job's working directory)
#   mics_prepare_checkpoint_dir DIR [RANKS]
#                                 creates DIR and, when DIR is on Lustre and `lfs` exists, sets its default
#                                 striping for the files and run folders made under it later; prints what it
#                                 did. It never fails the job: a failed mkdir or lfs setstripe is reported
#                                 and the job goes on with the file system's defaults.
#
# Why:
# - HDF5 1.10+ takes flock()-style locks when it opens a file; on Lustre (FSx) and NFS locking fails
#   ("unable to lock file") or stalls, depending on the mount's flock options. mics turns locking off in its
#   own file-access property lists (docs/file-formats.md, "File locking on Lustre and NFS"), but h5py,
#   h5dump, h5ls and other tools run on a checkpoint (in this job or a later one) read the variable.
# - Striping: every rank writes its own checkpoint file of about 3 x 4 bytes x parameters / ranks (fp32
#   parameters, Adam m and v; 1.5 GB in all for GPT-2 124M). With many ranks, a stripe count of 1 already
#   spreads the files over the OSTs (each file on one OST, the files on different ones) without the cost of
#   every file touching every OST; with fewer ranks than OSTs the few large files are striped over all
#   OSTs (-c -1) so that each one is written by all of them. A stripe size of 16 MiB matches the large
#   sequential writes of the checkpoint writer (FSx's default is 1 MiB).
#
# Environment (optional):
#   MICS_STRIPE_COUNT   lfs setstripe -c: a number, -1 (all OSTs), or auto (default: 1 when the job has at
#                       least as many ranks as the file system has OSTs, else -1)
#   MICS_STRIPE_SIZE    lfs setstripe -S (default 16M; 4M-16M suit large sequential writes)
#   MICS_STRIPE=off     leave the directory's striping alone

if [[ -z ${HDF5_USE_FILE_LOCKING:-} ]]; then
  export HDF5_USE_FILE_LOCKING=FALSE
fi

mics_checkpoint_dir() {
  local deck=$1 dir='' arg prev=''
  shift
  for arg in "$@"; do
    case $arg in
      --checkpoint.dir=*) dir=${arg#--checkpoint.dir=} ;;
    esac
    [[ $prev == --checkpoint.dir ]] && dir=$arg
    prev=$arg
  done
  if [[ -z $dir && -r $deck ]]; then
    # [checkpoint] dir = VALUE   # comment
    dir=$(awk '
      /^[[:space:]]*\[/ { section = $0; gsub(/[][[:space:]]/, "", section); next }
      section == "checkpoint" {
        line = $0; sub(/#.*/, "", line)
        if (match(line, /^[[:space:]]*dir[[:space:]]*=/)) {
          value = substr(line, RLENGTH + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", value); found = value
        }
      }
      END { print found }' "$deck" 2>/dev/null)
  fi
  echo "${dir:-checkpoints}"
}

mics_prepare_checkpoint_dir() {
  local dir=$1 ranks=${2:-${SLURM_NTASKS:-1}} fs count size osts
  mics_log "HDF5_USE_FILE_LOCKING=$HDF5_USE_FILE_LOCKING (h5py, h5dump and other HDF5 tools; mics itself never locks)"
  if ! mkdir -p -- "$dir" 2>/dev/null; then
    mics_log "checkpoint directory $dir: cannot create it here; striping left alone (mics reports the error)" >&2
    return 0
  fi
  dir=$(cd -- "$dir" && pwd) || return 0
  fs=$(stat -f -c %T -- "$dir" 2>/dev/null || echo unknown)
  if [[ $fs != lustre ]]; then
    mics_log "checkpoint directory $dir is on $fs, not Lustre: no striping"
    return 0
  fi
  if [[ ${MICS_STRIPE:-} == off ]]; then
    mics_log "checkpoint directory $dir is on Lustre: striping left as it is (MICS_STRIPE=off)"
    return 0
  fi
  if ! command -v lfs >/dev/null 2>&1; then
    mics_log "checkpoint directory $dir is on Lustre but there is no lfs command: striping left as it is"
    return 0
  fi
  count=${MICS_STRIPE_COUNT:-auto}
  size=${MICS_STRIPE_SIZE:-16M}
  if [[ $count == auto ]]; then
    osts=$(lfs df "$dir" 2>/dev/null | grep -c '\[OST:' || true)
    if [[ -z $osts || $osts -eq 0 || $ranks -ge $osts ]]; then
      count=1   # one file per rank: the files spread over the OSTs by themselves
    else
      count=-1  # fewer files than OSTs: stripe each over all of them
    fi
    mics_log "checkpoint directory $dir: $ranks rank(s), ${osts:-?} OST(s): stripe count $count"
  fi
  if lfs setstripe -c "$count" -S "$size" "$dir" 2>&1; then
    mics_log "checkpoint directory $dir: lfs setstripe -c $count -S $size done; new files and run folders" \
             "under it inherit it: $(lfs getstripe -d "$dir" 2>/dev/null | tr '\n' ' ')"
  else
    mics_log "checkpoint directory $dir: lfs setstripe -c $count -S $size failed; going on with its current" \
             "striping" >&2
  fi
  return 0
}
