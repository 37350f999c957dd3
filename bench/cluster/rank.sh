#!/usr/bin/env bash
# rank.sh CMD...: run one MPI rank (CMD) capped to MICS_CPU_PER_RANK of one core (e.g. 0.125), in a
# cgroup (v1 cpu controller) of its own named NAME-rRANK after the cluster ($MICS_CLUSTER_NAME) and
# the rank. A GPU of a real cluster computes at its own speed however many nodes there are; ranks of
# emulated nodes share this host's cores, so without a cap each rank would compute half as fast at 4
# nodes as at 2 and weak scaling would measure the host, not the network. The cgroup is recorded in
# the cluster's state so that `cluster.sh down` removes it. Without MICS_CPU_PER_RANK, or where no v1
# cpu controller can be mounted, CMD runs uncapped (said once on stderr by rank 0).
set -euo pipefail
share="${MICS_CPU_PER_RANK:-}"
rank="${OMPI_COMM_WORLD_RANK:?rank.sh runs under mpirun}"
name="${MICS_CLUSTER_NAME:?rank.sh: MICS_CLUSTER_NAME is not set}"
state="${MICS_CLUSTER_ROOT:-/tmp/mics-cluster}/$name"
if [ -n "$share" ]; then
  period=10000  # 10 ms: a throttled rank waits at most this long to answer a peer
  quota="$(awk -v s="$share" -v p="$period" 'BEGIN { printf "%d", s * p }')"
  # `ip netns exec` gave this node a fresh /sys without the cgroup mounts: mount the cpu hierarchy
  # privately (this mount namespace only) and make our cgroup there.
  mnt="$(mktemp -d "/tmp/$name-cg.XXXXXX")"
  if mount -t cgroup -o cpu cgroup "$mnt" 2>/dev/null; then
    cg="$mnt/$name-r$rank"
    mkdir -p "$cg"
    echo "$name-r$rank" >> "$state/cgroups"
    echo "$period" > "$cg/cpu.cfs_period_us"
    echo "$quota" > "$cg/cpu.cfs_quota_us"
    # Up to its cap the rank outweighs ordinary processes (8x), so its speed holds on a busy host.
    echo 8192 > "$cg/cpu.shares"
    echo $$ > "$cg/cgroup.procs"
    umount -l "$mnt" 2>/dev/null || true
  elif [ "$rank" = 0 ]; then
    echo "rank.sh: no v1 cpu cgroup controller here; ranks run without a CPU cap" >&2
  fi
  rmdir "$mnt" 2>/dev/null || true
fi
exec "$@"
