#!/usr/bin/env bash
# A cluster in a box: N emulated nodes on this host, each its own network namespace, joined through
# veth pairs to a bridge that lives in a hub namespace of the cluster's own, every node's link shaped
# with tc tbf to RATE in both directions. Ranks on one node talk through shared memory (vader), ranks
# on different nodes through TCP over the shaped links. See bench/cluster/README.md.
#
#   cluster.sh up NAME NODES RATE      create NAME-hub, NAME-n1 .. NAME-nNODES (RATE as tc writes it: 50mbit)
#   cluster.sh shape NAME RATE         change every link of NAME to RATE (both directions)
#   cluster.sh down NAME               remove exactly what `up NAME` made (and processes it recorded)
#   cluster.sh exec NAME NODE CMD...   run CMD as node NODE (1..N): its netns, its own UTS hostname
#   cluster.sh mpirun NAME ARGS...     mpirun on node 1 with the launch agent and a hostfile of all nodes
#   cluster.sh counters NAME           per node: kernel tx/rx bytes and packets of the node's link, tc drops
#   cluster.sh check                   exit 0 if this host can build a cluster, else 77 and the reason
#   cluster.sh reap                    tear down clusters whose owner process (see `up`) has died
#
# NAME must be short (<= 10 characters, [a-z0-9]): it prefixes every namespace and every cgroup made
# here, and `down` removes only those names. State lives in $MICS_CLUSTER_ROOT/NAME (/tmp/mics-cluster);
# `up` records its owner, $MICS_CLUSTER_OWNER or else the calling process, for `reap`.
# Nothing is made in the root network namespace: the veth pairs are created inside the node and hub
# namespaces, so traffic can only flow between namespaces of this cluster.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${MICS_CLUSTER_ROOT:-/tmp/mics-cluster}"
SUBNET_PREFIX="10.199.0"      # node k is $SUBNET_PREFIX.k/24, private to the cluster's own namespaces
MTU=1500

die() { echo "cluster: $*" >&2; exit 1; }

check_name() {
  [[ "$1" =~ ^[a-z0-9]{1,10}$ ]] || die "bad cluster name '$1' (1-10 characters a-z0-9)"
}

state_dir() { echo "$ROOT/$1"; }

# The reasons this host cannot build a cluster, empty when it can.
why_not() {
  [ "$(id -u)" -eq 0 ] || { echo "not root (network namespaces, veth and tc need CAP_NET_ADMIN)"; return; }
  local tool
  for tool in ip tc unshare hostname mpirun; do
    command -v "$tool" >/dev/null 2>&1 || { echo "no '$tool' on PATH"; return; }
  done
  local probe="micsprobe$$"
  if ! ip netns add "$probe" 2>/dev/null; then echo "cannot create a network namespace (ip netns add)"; return; fi
  local reason=""
  if ! ip -n "$probe" link add a0 type veth peer name a1 2>/dev/null; then
    reason="cannot create a veth pair inside a namespace"
  elif ! ip -n "$probe" link add b0 type bridge 2>/dev/null; then
    reason="cannot create a bridge inside a namespace"
  elif ! ip -n "$probe" link set a0 up 2>/dev/null ||
       ! ip netns exec "$probe" tc qdisc add dev a0 root tbf rate 10mbit burst 4kb limit 100kb 2>/dev/null; then
    reason="tc cannot attach a tbf qdisc (sch_tbf missing?)"
  elif ! unshare --uts true 2>/dev/null; then
    reason="cannot create a UTS namespace (unshare --uts)"
  fi
  ip netns delete "$probe" 2>/dev/null || true
  echo "$reason"
}

nodes_of() { cat "$(state_dir "$1")/nodes"; }

cmd_up() {
  local name="$1" nodes="$2" rate="$3"
  check_name "$name"
  [[ "$nodes" =~ ^[0-9]+$ ]] && [ "$nodes" -ge 2 ] && [ "$nodes" -le 32 ] || die "NODES must be 2..32"
  local dir; dir="$(state_dir "$name")"
  [ ! -e "$dir" ] || die "$dir exists: cluster '$name' is up (or was not torn down: cluster.sh down $name)"
  local reason; reason="$(why_not)"
  [ -z "$reason" ] || die "cannot build a cluster here: $reason"
  mkdir -p "$dir"
  echo "$nodes" > "$dir/nodes"
  echo "$rate" > "$dir/rate"
  echo "${MICS_CLUSTER_OWNER:-$PPID}" > "$dir/owner"
  : > "$dir/pids"
  local hub="$name-hub"
  # Every namespace is recorded before it is configured, so that `down` removes it even if `up` fails.
  trap 'echo "cluster: up failed, tearing down $name" >&2; cmd_down "$name"' ERR
  echo "$hub" >> "$dir/namespaces"
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip netns exec "$hub" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 up
  local tbf; tbf="$(tbf_args "$rate")"
  local k node
  for k in $(seq 1 "$nodes"); do
    node="$name-n$k"
    echo "$node" >> "$dir/namespaces"
    ip netns add "$node"
    ip -n "$node" link set lo up
    ip netns exec "$node" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$node" link add eth0 mtu "$MTU" type veth peer name "n$k" netns "$hub"
    ip -n "$node" addr add "$SUBNET_PREFIX.$k/24" dev eth0
    ip -n "$node" link set eth0 up
    ip -n "$hub" link set "n$k" mtu "$MTU" master br0 up
    # node -> bridge (what the node sends) and bridge -> node (what it receives), each at RATE
    ip netns exec "$node" tc qdisc add dev eth0 root $tbf
    ip netns exec "$hub" tc qdisc add dev "n$k" root $tbf
    echo "$node slots=${MICS_CLUSTER_SLOTS:-2}" >> "$dir/hostfile"
  done
  trap - ERR
  echo "cluster $name: $nodes nodes ($name-n1..$name-n$nodes, $SUBNET_PREFIX.1..$nodes), links shaped to $rate each way"
}

# tbf at RATE, a bucket of 10 ms at that rate (at least 3 frames), and a queue of 1 s (at least 64 kB)
# so that TCP is paced by the bucket rather than by drops (drops mean retransmitted bytes, which the
# kernel counters see and the engine does not).
tbf_args() {
  local bps burst limit
  bps="$(rate_bps "$1")"
  burst=$(( bps / 8 / 100 )); [ "$burst" -ge 4542 ] || burst=4542
  limit=$(( bps / 8 )); [ "$limit" -ge 65536 ] || limit=65536
  echo "tbf rate $1 burst $burst limit $limit"
}

cmd_shape() {
  local name="$1" rate="$2" k tbf
  check_name "$name"
  tbf="$(tbf_args "$rate")"
  for k in $(seq 1 "$(nodes_of "$name")"); do
    ip netns exec "$name-n$k" tc qdisc replace dev eth0 root $tbf
    ip netns exec "$name-hub" tc qdisc replace dev "n$k" root $tbf
  done
  echo "$rate" > "$(state_dir "$name")/rate"
}

# tc rate text -> bits per second (only the units tc's tbf accepts that we use)
rate_bps() {
  local r="$1" n unit
  n="${r%%[a-zA-Z]*}"; unit="${r#"$n"}"
  case "$unit" in
    bit) echo "$n" ;;
    kbit) echo $(( n * 1000 )) ;;
    mbit) echo $(( n * 1000000 )) ;;
    gbit) echo $(( n * 1000000000 )) ;;
    *) die "rate '$r': use bit, kbit, mbit or gbit" ;;
  esac
}

cmd_down() {
  local name="$1"
  check_name "$name"
  local dir; dir="$(state_dir "$name")"
  [ -d "$dir" ] || { echo "cluster $name: nothing to tear down"; return 0; }
  local pid
  # Processes the cluster started in the background (probe servers, runs), by their recorded PIDs.
  if [ -f "$dir/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done < "$dir/pids"
  fi
  # Anything still running inside one of our namespaces (an MPI daemon left over), by namespace.
  local ns
  if [ -f "$dir/namespaces" ]; then
    while read -r ns; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done < "$dir/namespaces"
    sleep 0.2
    while read -r ns; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns delete "$ns" 2>/dev/null || true
    done < "$dir/namespaces"
  fi
  # Per-rank CPU cgroups (bench/cluster/rank.sh) of this cluster, by their names NAME-rRANK.
  local cg
  if [ -f "$dir/cgroups" ] && [ -d /sys/fs/cgroup/cpu ]; then
    sort -u "$dir/cgroups" | while read -r cg; do
      [[ "$cg" == "$name-r"* ]] && rmdir "/sys/fs/cgroup/cpu/$cg" 2>/dev/null || true
    done
  fi
  rm -rf "$dir"
  echo "cluster $name: torn down"
}

cmd_exec() {
  local name="$1" k="$2"; shift 2
  check_name "$name"
  [[ "$k" =~ ^[0-9]+$ ]] && [ "$k" -ge 1 ] && [ "$k" -le "$(nodes_of "$name")" ] || die "no node $k in $name"
  local node="$name-n$k"
  exec ip netns exec "$node" unshare --uts -- bash -c 'hostname "$0" && exec "$@"' "$node" "$@"
}

cmd_mpirun() {
  local name="$1"; shift
  check_name "$name"
  local dir; dir="$(state_dir "$name")"
  [ -f "$dir/hostfile" ] || die "cluster $name is not up"
  # mpirun runs as node 1 (from the root namespace its daemons could not reach it back); the other
  # nodes' daemons start through agent.sh, which enters the node's namespace under its own hostname.
  export MICS_CLUSTER_NAME="$name"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  cmd_exec "$name" 1 mpirun --allow-run-as-root --oversubscribe --bind-to none \
    --hostfile "$dir/hostfile" \
    --mca plm_rsh_agent "$HERE/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include "$SUBNET_PREFIX.0/24" --mca btl_tcp_if_include "$SUBNET_PREFIX.0/24" \
    --mca btl self,vader,tcp \
    -x MICS_CLUSTER_NAME "$@"
}

# One line per node: NODE tx_bytes tx_packets rx_bytes rx_packets tc_dropped (counters of the node's
# eth0 as the kernel keeps them; tc drops of both directions' tbf).
cmd_counters() {
  local name="$1" k node
  check_name "$name"
  for k in $(seq 1 "$(nodes_of "$name")"); do
    node="$name-n$k"
    local s="/sys/class/net/eth0/statistics"
    local tx txp rx rxp d1 d2
    read -r tx txp rx rxp < <(ip netns exec "$node" cat "$s/tx_bytes" "$s/tx_packets" "$s/rx_bytes" "$s/rx_packets" | tr '\n' ' '; echo)
    d1="$(ip netns exec "$node" tc -s qdisc show dev eth0 | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -1)"
    d2="$(ip netns exec "$name-hub" tc -s qdisc show dev "n$k" | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p' | head -1)"
    echo "$node $tx $txp $rx $rxp $(( ${d1:-0} + ${d2:-0} ))"
  done
}

# Clusters whose owner died without tearing them down (a test killed by its timeout).
cmd_reap() {
  local dir name owner
  [ -d "$ROOT" ] || return 0
  for dir in "$ROOT"/*/; do
    [ -f "$dir/owner" ] || continue
    name="$(basename "$dir")"
    owner="$(cat "$dir/owner")"
    if ! kill -0 "$owner" 2>/dev/null; then cmd_down "$name"; fi
  done
}

case "${1:-}" in
  up) [ $# -eq 4 ] || die "usage: cluster.sh up NAME NODES RATE"; cmd_up "$2" "$3" "$4" ;;
  shape) [ $# -eq 3 ] || die "usage: cluster.sh shape NAME RATE"; cmd_shape "$2" "$3" ;;
  down) [ $# -eq 2 ] || die "usage: cluster.sh down NAME"; cmd_down "$2" ;;
  exec) [ $# -ge 4 ] || die "usage: cluster.sh exec NAME NODE CMD..."; shift; cmd_exec "$@" ;;
  mpirun) [ $# -ge 2 ] || die "usage: cluster.sh mpirun NAME ARGS..."; shift; cmd_mpirun "$@" ;;
  counters) [ $# -eq 2 ] || die "usage: cluster.sh counters NAME"; cmd_counters "$2" ;;
  reap) cmd_reap ;;
  check) reason="$(why_not)"; if [ -n "$reason" ]; then echo "$reason"; exit 77; fi; echo "ok" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
