#!/usr/bin/env bash
# mpirun's launch agent for the emulated cluster (--mca plm_rsh_agent): mpirun calls it the way it
# would call ssh, `agent.sh HOST WORDS...`, where WORDS form a shell command line (ssh joins them with
# spaces and hands them to the remote shell; so do we). HOST is a node of the cluster named in
# $MICS_CLUSTER_NAME; the command runs in that node's network namespace, in a UTS namespace of its
# own whose hostname is HOST, so Open MPI sees distinct hosts and each node its own shared memory.
set -euo pipefail
host="$1"; shift
name="${MICS_CLUSTER_NAME:?agent.sh: MICS_CLUSTER_NAME is not set}"
# Only nodes of our own cluster: NAME-nK with K in 1..N.
nodes="$(cat "${MICS_CLUSTER_ROOT:-/tmp/mics-cluster}/$name/nodes")"
k="${host#"$name"-n}"
if [ "$k" = "$host" ] || ! [[ "$k" =~ ^[0-9]+$ ]] || [ "$k" -lt 1 ] || [ "$k" -gt "$nodes" ]; then
  echo "agent.sh: '$host' is not a node of cluster $name" >&2; exit 1
fi
exec ip netns exec "$host" unshare --uts -- bash -c 'hostname "$0" && eval "$1"' "$host" "$*"
