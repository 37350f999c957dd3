"""Python side of the emulated cluster (cluster.sh): bring a cluster up and down, run mics on it
under mpirun with a timeout, read the kernel's counters of every node's link, and turn the engine's
traffic counters (rank 0's) into bytes per node.

Kernel counters: a node's link is the veth `eth0` inside its namespace; tx_bytes counts every frame
the node sent, Ethernet header included. A TCP segment carries 66 bytes of headers (Ethernet 14,
IPv4 20, TCP 20, timestamp option 12) whatever its payload; a GSO super-packet is one skb with one
set of headers (the kernel counts it once in tx_packets and its headers once in tx_bytes). So the TCP
payload a node sent is tx_bytes - 66 * tx_packets, exactly, as long as every frame is TCP over IPv4
with timestamps and no SACK blocks (the cluster disables IPv6; nothing else runs in the namespaces;
the tbf queue is deep enough that nothing is dropped, so nothing is retransmitted). Pure ACKs that a
node sends for what it receives are 66-byte frames with no payload and drop out of the sum.
"""
import json
import os
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_SH = os.path.join(HERE, "cluster.sh")
HEADER_BYTES = 66  # Ethernet 14 + IPv4 20 + TCP 20 + timestamps 12
MSS = 1448         # 1500-byte MTU minus IPv4, TCP and timestamps
SKIP = 77

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_mpi_yield_when_idle": "1",
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
}


def why_not():
    """'' when this host can build a cluster, else the reason (not root, a tool missing, ...)."""
    try:
        proc = subprocess.run([CLUSTER_SH, "check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cluster.sh check failed: %s" % e
    if proc.returncode == 0:
        return ""
    return (proc.stdout + proc.stderr).strip() or "cluster.sh check exited %d" % proc.returncode


def payload_rate(rate_bps):
    """TCP payload bits/s a link shaped to rate_bps carries with full frames."""
    return rate_bps * MSS / (MSS + HEADER_BYTES)


def parse_rate(text):
    units = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError("rate %r: use bit, kbit, mbit or gbit" % text)


class Cluster:
    """`with Cluster(name, nodes, rate) as c:` builds it and always tears it down (also on SIGTERM)."""

    def __init__(self, name, nodes, rate, slots=2):
        self.name, self.nodes, self.rate, self.slots = name, nodes, rate, slots
        self.env = dict(os.environ, MICS_CLUSTER_OWNER=str(os.getpid()), MICS_CLUSTER_SLOTS=str(slots), **MPI_ENV)
        self.children = []
        self._old_term = None

    def __enter__(self):
        self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        subprocess.run([CLUSTER_SH, "reap"], env=self.env, capture_output=True, timeout=120)
        self.sh("up", self.name, str(self.nodes), self.rate, timeout=120)
        return self

    def __exit__(self, *exc):
        self.down()
        signal.signal(signal.SIGTERM, self._old_term or signal.SIG_DFL)
        return False

    def _on_term(self, signum, frame):
        self.down()
        raise SystemExit(128 + signum)

    def down(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.children = []
        subprocess.run([CLUSTER_SH, "down", self.name], env=self.env, capture_output=True, timeout=120)

    def sh(self, *args, timeout=120):
        proc = subprocess.run([CLUSTER_SH] + list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError("cluster.sh %s failed (%d): %s%s" % (" ".join(args), proc.returncode,
                                                                  proc.stdout, proc.stderr))
        return proc.stdout

    def shape(self, rate):
        self.sh("shape", self.name, rate)
        self.rate = rate

    def address(self, node):
        return "10.199.0.%d" % node

    def counters(self):
        """{node index: (tx_bytes, tx_packets, rx_bytes, rx_packets, tc drops)} of every node's link."""
        out = {}
        for line in self.sh("counters", self.name).splitlines():
            host, *values = line.split()
            out[int(host.rsplit("-n", 1)[1])] = tuple(int(v) for v in values)
        return out

    def probe(self, sender, receiver, seconds, port=5201):
        """TCP payload bits/s from node `sender` to node `receiver`, measured by the receiver."""
        probe = os.path.join(HERE, "probe.py")
        server = subprocess.Popen([CLUSTER_SH, "exec", self.name, str(receiver), "python3", probe, "serve", str(port)],
                                  env=self.env, stdout=subprocess.PIPE, text=True)
        self.children.append(server)
        server.stdout.readline()  # "listening"
        subprocess.run([CLUSTER_SH, "exec", self.name, str(sender), "python3", probe, "send",
                        self.address(receiver), str(port), str(seconds)],
                       env=self.env, check=True, capture_output=True, timeout=seconds + 60)
        result = json.loads(server.stdout.readline())
        server.wait(timeout=30)
        self.children.remove(server)
        return 8.0 * result["bytes"] / result["seconds"], result

    def mpirun(self, ranks, argv, cwd, timeout, mpi_args=(), on_line=None):
        """mpirun -np ranks argv... on the cluster (ranks fill node 1 first, `slots` per node). Returns
        (returncode, output). on_line(line) is called for every line of output as it comes."""
        cmd = ["timeout", "-k", "10", str(timeout), CLUSTER_SH, "mpirun", self.name, "-np", str(ranks)]
        for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            cmd += ["-x", key]
        cmd += ["--mca", "mpi_yield_when_idle", "1"] + list(mpi_args) + list(argv)
        proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        self.children.append(proc)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line)
        proc.wait()
        self.children.remove(proc)
        return proc.returncode, "".join(lines)


def payload(counters_node):
    """TCP payload bytes a node sent (see the module docstring)."""
    tx_bytes, tx_packets = counters_node[0], counters_node[1]
    return tx_bytes - HEADER_BYTES * tx_packets


# --- the engine's group layout (docs/algorithms.md#groups), to spread rank 0's counters over every rank ---------------

def groups_of(kind, world, rpn, p):
    """Member lists (sorted by rank) of every group of `kind`."""
    nodes = world // rpn
    J = p // rpn if p > rpn else 1  # nodes one partition group spans
    L = p // J
    if kind == "world":
        return [list(range(world))]
    if kind == "node":
        return [list(range(n * rpn, (n + 1) * rpn)) for n in range(nodes)]
    if kind == "partition":
        return [list(range(g * p, (g + 1) * p)) for g in range(world // p)]
    if kind == "replication":
        return [list(range(q, world, p)) for q in range(p)]
    if kind == "intra_node":
        return [list(range(g * p + j * L, g * p + (j + 1) * L)) for g in range(world // p) for j in range(J)]
    if kind == "inter_node":
        return [[g * p + j * L + l for j in range(J)] for g in range(world // p) for l in range(L)]
    raise ValueError(kind)


def engine_node_bytes(traffic, world, rpn, p):
    """Bytes each node sends off-node per step under the engine's ring accounting, summed over the
    node's ranks: {node index (1-based): bytes}. The metrics carry rank 0's counters; every member of
    a group sends the same bytes per collective (shards are padded to equal size) and every group of a
    kind runs the same collectives, so a rank's bytes_sent for a kind is rank 0's, and it counts as
    off-node when the rank's ring successor in that group (next member by rank, wrapping) is on
    another node. Checked against rank 0's own bytes_sent_off_node."""
    per_node = {n + 1: 0 for n in range(world // rpn)}
    for kind, t in traffic.items():
        if t["collectives"] == 0 or t["bytes_sent"] == 0:
            continue
        groups = groups_of(kind, world, rpn, p)
        if len(groups[0]) != t["participants"]:
            raise ValueError("layout disagrees with the run: %s groups of %d, metrics say %d participants"
                             % (kind, len(groups[0]), t["participants"]))
        rank0_off = 0
        for g in groups:
            if len(g) < 2:
                continue
            for i, m in enumerate(g):
                succ = g[(i + 1) % len(g)]
                if m // rpn != succ // rpn:
                    per_node[m // rpn + 1] += t["bytes_sent"]
                    if m == 0:
                        rank0_off = t["bytes_sent"]
        if rank0_off != t["bytes_sent_off_node"]:
            raise ValueError("layout disagrees with rank 0's counters for %s: off-node %d, expected %d"
                             % (kind, t["bytes_sent_off_node"], rank0_off))
    return per_node


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
