# shellcheck shell=bash
# How the job scripts start mics (sourced with MICS_JOBS_DIR set to the jobs folder; requeue.sh sources it).
#   mics_find_binary   sets MICS_STEP, the words that follow srun's own options (or mpirun's) in a job step,
#                      and MICS, the mics executable (its name in the image when run in a container).
#
# Where mics comes from, first match wins:
#   MICS_CONTAINER=IMAGE   mics inside a container image (below); MICS, if set, is its path in the image
#   MICS=/path/to/mics     that executable (MICS_BIN is accepted too)
#   an installed tree      <prefix>/bin/mics for jobs installed in <prefix>/share/mics/jobs (cmake --install
#                          writes jobs/lib/install_layout.sh, which says where bin/ is)
#   PATH                   `mics` on PATH (e.g. after `module load mics` or `spack load mics`)
#   a source tree          <repo>/build/mics (make build)
#
# Containers (MICS_CONTAINER): the same job scripts, mics and its libraries from the image.
#   MICS_CONTAINER_RUNTIME apptainer (default when installed), singularity, or pyxis (Slurm's container
#                          plugin with enroot, as on ParallelCluster: IMAGE is a .sqsh file or a docker
#                          reference, passed to srun --container-image). Default for a .sqsh IMAGE: pyxis.
#   MICS_CONTAINER_MOUNTS  comma-separated SRC[:DST] paths to mount in the container (data, checkpoints);
#                          pyxis also mounts the working directory and starts there, as apptainer does.
# Apptainer runs `apptainer exec --nv IMAGE mics ...` in every task: the image's Open MPI is started by
# the host's srun --mpi=pmix (or mpirun), so its PMIx must match the host's (packaging/apptainer/mics.def).

_mics_jobs_to_bindir() {
  # the bin/ folder of an installed tree, or nothing in a source tree
  local MICS_INSTALLED_BINDIR=
  [[ -f $MICS_JOBS_DIR/lib/install_layout.sh ]] || return 0
  # shellcheck source=/dev/null
  source "$MICS_JOBS_DIR/lib/install_layout.sh" || return 0
  [[ -n $MICS_INSTALLED_BINDIR ]] || return 0
  if [[ $MICS_INSTALLED_BINDIR == /* ]]; then
    echo "$MICS_INSTALLED_BINDIR"
  else
    (cd -- "$MICS_JOBS_DIR/$MICS_INSTALLED_BINDIR" 2>/dev/null && pwd)
  fi
}

_mics_container_step() {
  local image=$MICS_CONTAINER runtime=${MICS_CONTAINER_RUNTIME:-}
  MICS=${MICS:-${MICS_BIN:-mics}}
  if [[ -z $runtime ]]; then
    if [[ $image == *.sqsh ]]; then runtime=pyxis
    elif command -v apptainer >/dev/null 2>&1; then runtime=apptainer
    elif command -v singularity >/dev/null 2>&1; then runtime=singularity
    else
      echo "MICS_CONTAINER=$image but neither apptainer nor singularity is installed here; for Slurm's" \
           "pyxis/enroot set MICS_CONTAINER_RUNTIME=pyxis" >&2
      return 2
    fi
  fi
  case $runtime in
    apptainer | singularity)
      if ! command -v "$runtime" >/dev/null 2>&1; then
        echo "MICS_CONTAINER_RUNTIME=$runtime but no '$runtime' command on PATH" >&2
        return 2
      fi
      if [[ $image != *://* && ! -e $image ]]; then
        echo "MICS_CONTAINER=$image: no such image (build it: apptainer build mics.sif packaging/apptainer/mics.def)" >&2
        return 2
      fi
      MICS_STEP=("$runtime" exec --nv)
      [[ -n ${MICS_CONTAINER_MOUNTS:-} ]] && MICS_STEP+=(--bind "$MICS_CONTAINER_MOUNTS")
      MICS_STEP+=("$image" "$MICS")
      ;;
    pyxis)
      MICS_STEP=(--container-image="$image" --container-workdir="$PWD"
                 --container-mounts="$PWD${MICS_CONTAINER_MOUNTS:+,$MICS_CONTAINER_MOUNTS}" "$MICS")
      ;;
    *)
      echo "MICS_CONTAINER_RUNTIME=$runtime: use apptainer, singularity or pyxis" >&2
      return 2
      ;;
  esac
}

mics_find_binary() {
  if [[ -n ${MICS_CONTAINER:-} ]]; then
    _mics_container_step || exit 2
    return 0
  fi
  MICS=${MICS:-${MICS_BIN:-}}
  if [[ -z $MICS ]]; then
    local bindir
    bindir=$(_mics_jobs_to_bindir)
    if [[ -n $bindir && -x $bindir/mics ]]; then
      MICS=$bindir/mics
    else
      MICS=$(command -v mics 2>/dev/null || true)
    fi
    [[ -n $MICS ]] || MICS=$(cd -- "$MICS_JOBS_DIR/.." 2>/dev/null && pwd)/build/mics
  fi
  if [[ ! -x $MICS ]]; then
    echo "no mics executable at '$MICS': build it (make build), install it (cmake --install, spack" \
         "install mics), or set MICS=/path/to/mics or MICS_CONTAINER=/path/to/mics.sif" >&2
    exit 2
  fi
  MICS_STEP=("$MICS")
}
