#!/usr/bin/env python3
"""MiCS against ZeRO-3 where the network is the bottleneck: ddp, zero3, mics with p = ranks per node,
and mics with p spanning 2 nodes (hierarchical all-gather on and off), on 2 and 4 emulated nodes of 2
ranks (tests/cluster/cluster.sh: a network namespace per node, tc-shaped links, TCP between nodes,
shared memory inside one). Prints a table, writes it with every number as JSON, and plots it.

    python3 bench/cluster/run_bench.py --mics build/mics [--cluster p4d|p3dn] [--rate auto|150mbit]
        [--nodes 2,4] [--steps 8] [--cpu-per-rank 0.125] [--out DIR]

Link rate (--rate auto): a calibration run of zero3 on 2 nodes over a fast link measures the compute
time of one optimizer step per rank (the engine's `compute` time, under the CPU cap) and the bytes
one node sends off-node per step (the engine's ring accounting); the rate is then chosen so that
compute / (bytes / rate) equals that ratio on the chosen cluster (bench/cluster/README.md derives
1.31 for p4d, 0.82 for p3dn).

Columns
  tok/s          global tokens per second, median over the steps after the warm-up
  compute .. opt the engine's step-time split, median seconds per step (rank 0): compute, waiting for
                 parameter gathers, reduce-scatter, replica all-reduce, optimizer; `other` is the total
                 less these parts (the engine's timers do not cover it)
  eng MB/node    bytes one node sends off-node per step by the engine's counters (ring accounting,
                 summed over the node's ranks by the group layout), largest over nodes
  wire MB/node   TCP payload one node sent per step by the kernel's counters of its link
                 (tx_bytes - 66 * tx_packets), over the steps after the warm-up, largest over nodes
  weak eff       (tokens/s per rank at 4 nodes) / (tokens/s per rank at 2 nodes)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "cluster"))
import clusterlib  # noqa: E402

# compute time / inter-node time of one ZeRO-3 micro-step on the cluster (README.md: the arithmetic)
CLUSTERS = {
    # name: (GPUs per node, dense bf16/fp16 TFLOP/s per GPU, node network Gbit/s)
    "p4d": (8, 312.0, 400.0),
    "p3dn": (8, 125.0, 100.0),
}
TOKENS_PER_GPU = 4096   # micro-batch 8 x sequence 512 per GPU and micro-step
MFU = 0.5               # achieved fraction of peak
# Open MPI settings for every run of every strategy (README.md, "MPI settings"): a progress thread in
# the TCP transport, so that transfers between nodes move while a rank computes (MPI otherwise moves
# them only inside MPI calls), and the ring algorithm for the non-blocking all-reduce (the default for
# an in-place all-reduce is reduce-to-root and broadcast, which sends up to twice the ring's bytes
# from some nodes and runs in 2 log2(r) sequential rounds).
DEFAULT_MPI_ARGS = "--mca btl_tcp_progress_thread 1 --mca coll_libnbc_iallreduce_algorithm 1"
TIMES = ("compute", "gather_wait", "reduce_scatter", "replica_all_reduce", "optimizer", "total")


def cluster_ratio(name):
    gpus, tflops, gbits = CLUSTERS[name]
    # per micro-step: compute 6*N*T / (F*MFU) on every GPU at once; the node's NIC carries the ring
    # all-gathers of forward and backward and the reduce-scatter, 2 bytes per parameter each: 6*N bytes
    return TOKENS_PER_GPU * (gbits * 1e9 / 8) / (tflops * 1e12 * MFU)


def configs(nodes, rpn):
    world = nodes * rpn
    return [
        ("ddp", "ddp", 1, "auto"),
        ("zero3", "zero3", world, "auto"),
        ("mics p=%d" % rpn, "mics", rpn, "auto"),
        ("mics p=%d hier" % (2 * rpn), "mics", 2 * rpn, "on"),
        ("mics p=%d flat" % (2 * rpn), "mics", 2 * rpn, "off"),
    ]


class Bench:
    def __init__(self, args, scratch):
        self.args = args
        self.scratch = scratch
        self.deck = os.path.join(SOURCE, "inputs", "tiny.ini")
        self.mics = os.path.abspath(args.mics)

    def train_argv(self, run, strategy, p, hierarchical, steps):
        a = self.args
        argv = [os.path.join(HERE, "rank.sh"), self.mics, "train", "--deck", self.deck, "--run.name=" + run,
                "--train.steps=%d" % steps, "--parallel.strategy=" + strategy,
                "--parallel.hierarchical=" + hierarchical, "--model.layers=%d" % a.layers,
                "--model.channels=%d" % a.channels, "--model.heads=%d" % a.heads, "--model.seq_len=%d" % a.seq_len,
                "--train.micro_batch=%d" % a.micro_batch, "--train.grad_accum=%d" % a.grad_accum,
                "--train.val_every=0", "--train.resume=never", "--checkpoint.every_steps=0",
                "--backend.threads=1", "--log.level=warning", "--train.log_every=1000"]
        if strategy == "mics":
            argv.append("--parallel.partition_size=%d" % p)
        return argv

    def run(self, cluster, nodes, label, strategy, p, hierarchical, steps, warmup):
        run = "%s-%dn" % (label.replace(" ", "_").replace("=", ""), nodes)
        world = nodes * self.args.rpn
        metrics_path = os.path.join(self.scratch, "runs", run, "metrics.jsonl")
        snapshots = {}
        done = threading.Event()

        def watch():  # kernel counters when the warm-up ends and when the last step is written
            while not done.is_set():
                try:
                    with open(metrics_path) as f:
                        lines = sum(1 for line in f if line.strip())
                except OSError:
                    lines = 0
                for mark in (warmup, steps):
                    if lines >= mark and mark not in snapshots:
                        snapshots[mark] = (lines, cluster.counters())
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.monotonic()
        rc, out = cluster.mpirun(world, self.train_argv(run, strategy, p, hierarchical, steps), cwd=self.scratch,
                                 timeout=self.args.timeout, mpi_args=self.args.mpi_args.split())
        wall = time.monotonic() - start
        done.set()
        watcher.join()
        if rc != 0:
            raise SystemExit("%s on %d nodes failed (%d):\n%s" % (run, nodes, rc, out[-3000:]))
        records = [r for r in clusterlib.read_metrics(metrics_path) if "tokens_per_s" in r]
        steady = records[warmup:] or records
        traffic = records[-1]["traffic"]
        engine = clusterlib.engine_node_bytes(traffic, world, self.args.rpn, p)
        wire = {}
        if warmup in snapshots and steps in snapshots:
            (l0, c0), (l1, c1) = snapshots[warmup], snapshots[steps]
            if l1 > l0:
                wire = {n: (clusterlib.payload(c1[n]) - clusterlib.payload(c0[n])) / (l1 - l0) for n in c1}
        result = {
            "label": label, "nodes": nodes, "world": world, "strategy": strategy, "p": p,
            "hierarchical": hierarchical, "steps": steps, "warmup": warmup, "wall_s": wall,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
            "times": {k: statistics.median(r["time"][k] for r in steady) for k in TIMES},
            "engine_node_bytes": engine, "wire_node_bytes": wire,
            "losses": [r["loss"] for r in records],
            "traffic_rank0": traffic,
        }
        return result


def gather_comm(cluster, nodes, rpn, mics, scratch, timeout):
    """Flat and hierarchical all-gather over partition groups of 2*rpn ranks (spanning 2 nodes), 4 MB
    per gather, by `mics bench comm` on the cluster, ranks uncapped: (flat us, hierarchical us)."""
    rc, out = cluster.mpirun(nodes * rpn, [os.path.abspath(mics), "bench", "comm", "-b", "4M", "-e", "4M", "-n", "5",
                                           "-w", "2", "--parallel.partition_size=%d" % (2 * rpn)],
                             cwd=scratch, timeout=timeout, mpi_args=DEFAULT_MPI_ARGS.split())
    if rc != 0:
        raise SystemExit("bench comm failed (%d):\n%s" % (rc, out[-3000:]))
    found, title = {}, None
    for line in out.splitlines():
        if line.startswith("# all_gather over partition groups"):
            title = "hier" if "hierarchical" in line else "flat"
        elif title and line.split() and line.split()[0].isdigit():
            found[title] = float(line.split()[4])
            title = None
    return found.get("flat"), found.get("hier")


def fmt_mb(x):
    return "%.2f" % (x / 1e6) if x is not None else "-"


def table(results, rpn):
    head = ("%-15s %5s | %9s | %7s %7s %7s %7s %7s %7s %7s | %8s %8s %6s | %8s"
            % ("config", "nodes", "tok/s", "compute", "gather", "r-scat", "replica", "optim", "other", "total",
               "eng MB", "wire MB", "w/e", "weak eff"))
    lines = [head, "-" * len(head)]
    by = {(r["label"], r["nodes"]): r for r in results}
    for r in results:
        t = r["times"]
        eng = max(r["engine_node_bytes"].values()) if r["engine_node_bytes"] else 0
        wire = max(r["wire_node_bytes"].values()) if r["wire_node_bytes"] else None
        ratio = "%.2f" % (wire / eng) if wire is not None and eng > 0 else "-"
        eff = "-"
        base = by.get((r["label"], 2))
        if r["nodes"] != 2 and base:
            eff = "%.1f%%" % (100 * (r["tokens_per_s"] / r["world"]) / (base["tokens_per_s"] / base["world"]))
        other = t["total"] - sum(t[k] for k in TIMES if k != "total")
        lines.append("%-15s %5d | %9.0f | %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f | %8s %8s %6s | %8s"
                     % (r["label"], r["nodes"], r["tokens_per_s"], t["compute"], t["gather_wait"],
                        t["reduce_scatter"], t["replica_all_reduce"], t["optimizer"], other, t["total"],
                        fmt_mb(eng), fmt_mb(wire), ratio, eff))
    return "\n".join(lines)


def goals(results, rpn):
    by = {(r["label"], r["nodes"]): r for r in results}
    out = []
    top = max(r["nodes"] for r in results)
    mics_label, z3 = "mics p=%d" % rpn, "zero3"
    m, z = by.get((mics_label, top)), by.get((z3, top))
    if m and z:
        x = m["tokens_per_s"] / z["tokens_per_s"]
        out.append("goal 1: %s / zero3 tokens/s at %d nodes = %.3fx (goal >= 2x): %s"
                   % (mics_label, top, x, "met" if x >= 2 else "NOT met"))
    if top != 2:
        def eff(label):
            a, b = by.get((label, 2)), by.get((label, top))
            if not (a and b):
                return None
            return (b["tokens_per_s"] / b["world"]) / (a["tokens_per_s"] / a["world"])
        em, ez = eff(mics_label), eff(z3)

        def held(label):  # step time at `top` nodes with the compute time of 2 nodes
            a, b = by.get((label, 2)), by.get((label, top))
            if not (a and b):
                return None
            return a["times"]["total"] / (b["times"]["total"] - b["times"]["compute"] + a["times"]["compute"])
        if em is not None and ez is not None:
            out.append("goal 2: weak scaling 2 -> %d nodes: %s %.1f%% (goal >= 90%%), zero3 %.1f%%: %s"
                       % (top, mics_label, 100 * em, 100 * ez, "met" if em >= 0.9 and ez < em else "NOT met"))
            out.append("        the same with each rank's compute time held at its 2-node value (what the host's "
                       "shared cores add, not the network): %s %.1f%%, zero3 %.1f%%; compute per step 2 -> %d "
                       "nodes: %s %.3f -> %.3f s, zero3 %.3f -> %.3f s"
                       % (mics_label, 100 * held(mics_label), 100 * held(z3), top, mics_label,
                          by[(mics_label, 2)]["times"]["compute"], by[(mics_label, top)]["times"]["compute"],
                          by[(z3, 2)]["times"]["compute"], by[(z3, top)]["times"]["compute"]))
    for nodes in sorted({r["nodes"] for r in results}):
        h, f = by.get(("mics p=%d hier" % (2 * rpn), nodes)), by.get(("mics p=%d flat" % (2 * rpn), nodes))
        if not (h and f):
            continue
        eh, ef = max(h["engine_node_bytes"].values()), max(f["engine_node_bytes"].values())
        wh = max(h["wire_node_bytes"].values()) if h["wire_node_bytes"] else float("nan")
        wf = max(f["wire_node_bytes"].values()) if f["wire_node_bytes"] else float("nan")
        gh, gf = h["times"]["gather_wait"], f["times"]["gather_wait"]
        out.append("goal 3 (%d nodes): hierarchical/flat gather wait %.3f/%.3f s = %.2f; off-node bytes per "
                   "step, engine %.2f/%.2f MB = %.2f, wire %.2f/%.2f MB = %.2f; step time %.3f/%.3f s = %.2f"
                   % (nodes, gh, gf, gh / gf if gf else float("nan"), eh / 1e6, ef / 1e6, eh / ef,
                      wh / 1e6, wf / 1e6, wh / wf, h["times"]["total"], f["times"]["total"],
                      h["times"]["total"] / f["times"]["total"]))
    return out


def plot(results, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = []
    for r in results:
        if r["label"] not in labels:
            labels.append(r["label"])
    node_counts = sorted({r["nodes"] for r in results})
    by = {(r["label"], r["nodes"]): r for r in results}
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    width = 0.8 / len(node_counts)
    for i, n in enumerate(node_counts):
        xs = [j + i * width for j in range(len(labels))]
        axes[0].bar(xs, [by[(l, n)]["tokens_per_s"] if (l, n) in by else 0 for l in labels], width,
                    label="%d nodes" % n)
        axes[2].bar(xs, [max(by[(l, n)]["wire_node_bytes"].values()) / 1e6
                         if (l, n) in by and by[(l, n)]["wire_node_bytes"] else 0 for l in labels], width,
                    label="wire, %d nodes" % n)
        axes[2].scatter(xs, [max(by[(l, n)]["engine_node_bytes"].values()) / 1e6 if (l, n) in by else 0
                             for l in labels], color="black", marker="_", s=200, zorder=3,
                        label="engine (ring)" if i == 0 else None)
    for ax in (axes[0], axes[2]):
        ax.set_xticks([j + width * (len(node_counts) - 1) / 2 for j in range(len(labels))])
        ax.set_xticklabels(labels, rotation=20)
        ax.legend()
    axes[0].set_ylabel("tokens/s (global)")
    axes[0].set_title("throughput")
    axes[2].set_ylabel("MB sent off-node per step, busiest node")
    axes[2].set_title("inter-node bytes per step")
    # step-time split, stacked, one bar per (config, nodes)
    parts = ("compute", "gather_wait", "reduce_scatter", "replica_all_reduce", "optimizer")
    names, bottoms = [], []
    keys = [(l, n) for l in labels for n in node_counts if (l, n) in by]
    bottom = [0.0] * len(keys)
    for part in parts:
        vals = [by[k]["times"][part] for k in keys]
        axes[1].bar(range(len(keys)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[1].plot(range(len(keys)), [by[k]["times"]["total"] for k in keys], "k_", markersize=14, label="total")
    axes[1].set_xticks(range(len(keys)))
    axes[1].set_xticklabels(["%s\n%dn" % k for k in keys], rotation=60, fontsize=7)
    axes[1].set_ylabel("seconds per step (median, rank 0)")
    axes[1].set_title("step-time split")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    del names, bottoms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mics", required=True)
    ap.add_argument("--cluster", default="p3dn", choices=sorted(CLUSTERS),
                    help="compute-to-network ratio to emulate (default: p3dn, where MiCS reports its largest gains)")
    ap.add_argument("--rate", default="auto", help="link rate per node and direction (tc units), or auto")
    ap.add_argument("--nodes", default="2,4")
    ap.add_argument("--rpn", type=int, default=2, help="ranks per node")
    ap.add_argument("--cpu-per-rank", type=float, default=0.125, help="CPU cap per rank in cores (0: none)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--probe-seconds", type=float, default=3.0)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per mpirun")
    ap.add_argument("--out", default="bench-cluster", help="folder for results.json, table.txt, cluster.png")
    ap.add_argument("--mpi-args", default=DEFAULT_MPI_ARGS,
                    help="mpirun arguments for every run (default: %(default)s; README.md says why)")
    ap.add_argument("--skip-comm", action="store_true", help="leave out the all-gather benchmark (bench comm)")
    ap.add_argument("--only", default="", help="comma-separated labels to run (default all)")
    args = ap.parse_args()

    reason = clusterlib.why_not()
    if reason:
        print("bench-cluster: cannot build emulated nodes on this host: " + reason)
        return 77
    os.makedirs(args.out, exist_ok=True)
    if args.cpu_per_rank > 0:
        os.environ["MICS_CPU_PER_RANK"] = "%g" % args.cpu_per_rank
    node_counts = [int(n) for n in args.nodes.split(",")]
    name = "bc%d" % (os.getpid() % 10 ** 8)
    report = {"args": vars(args), "cluster_ratio": cluster_ratio(args.cluster)}
    print("model: GPT-2 L=%d H=%d C=%d V=256 T=%d, micro-batch %d x grad_accum %d per rank, %d ranks per node, "
          "CPU cap %s core per rank" % (args.layers, args.heads, args.channels, args.seq_len, args.micro_batch,
                                         args.grad_accum, args.rpn, args.cpu_per_rank or "no"), flush=True)
    with tempfile.TemporaryDirectory(prefix="mics-cluster-bench-") as scratch:
        subprocess.run([os.path.abspath(args.mics), "data", "synth", "data/synth", "--tokens", "400000", "--seed",
                        "3"], cwd=scratch, check=True, capture_output=True)
        bench = Bench(args, scratch)
        rate = args.rate
        if rate == "auto":
            ratio = cluster_ratio(args.cluster)
            with clusterlib.Cluster(name, 2, "2gbit", slots=args.rpn) as cluster:
                cal = bench.run(cluster, 2, "calibrate", "zero3", 2 * args.rpn, "auto", 4, 1)
            compute = cal["times"]["compute"]
            node_bytes = max(cal["engine_node_bytes"].values())
            bps = ratio * node_bytes * 8 / compute
            rate = "%dkbit" % max(1000, round(bps / 1e3))
            report["calibration"] = {"compute_s": compute, "node_bytes": node_bytes, "rate_bps": bps, "run": cal}
            print("calibration (zero3, 2 nodes, fast link): compute %.3f s per step per rank, %.2f MB off-node per "
                  "node per step (engine)\n  %s: compute/comm %.2f => rate = %.2f x %.0f B x 8 / %.3f s = %s per "
                  "node and direction" % (compute, node_bytes / 1e6, args.cluster, ratio, ratio, node_bytes, compute,
                                          rate), flush=True)
        report["rate"] = rate
        results = []
        for nodes in node_counts:
            with clusterlib.Cluster(name, nodes, rate, slots=args.rpn) as cluster:
                configured = clusterlib.parse_rate(rate)
                measured, _ = cluster.probe(1, 2, args.probe_seconds)
                expected = clusterlib.payload_rate(configured)
                report.setdefault("probe", {})[nodes] = {"measured_bps": measured, "expected_bps": expected}
                print("%d nodes at %s: probe node1->node2 %.2f Mbit/s TCP payload, expected %.2f (%.3f)"
                      % (nodes, rate, measured / 1e6, expected / 1e6, measured / expected), flush=True)
                flat_us, hier_us = (None, None) if args.skip_comm else gather_comm(cluster, nodes, args.rpn, args.mics,
                                                                                   scratch, args.timeout)
                if flat_us and hier_us:
                    report.setdefault("gather_comm", {})[nodes] = {"flat_us": flat_us, "hier_us": hier_us}
                    print("%d nodes: all-gather of 4 MB over partition groups of %d (bench comm): flat %.0f ms, "
                          "hierarchical %.0f ms (%.2f; engine byte counts predict (p-k)/(p-1) = %.2f)"
                          % (nodes, 2 * args.rpn, flat_us / 1e3, hier_us / 1e3, hier_us / flat_us,
                             (2 * args.rpn - args.rpn) / (2 * args.rpn - 1)), flush=True)
                for label, strategy, p, hier in configs(nodes, args.rpn):
                    if args.only and label not in args.only.split(","):
                        continue
                    if p > nodes * args.rpn:
                        continue
                    r = bench.run(cluster, nodes, label, strategy, p, hier, args.steps, args.warmup)
                    results.append(r)
                    eng = max(r["engine_node_bytes"].values())
                    wire = max(r["wire_node_bytes"].values()) if r["wire_node_bytes"] else float("nan")
                    print("  %-15s %8.0f tok/s  step %.3f s  off-node/node/step engine %.2f MB wire %.2f MB  (%.0f s)"
                          % (label, r["tokens_per_s"], r["times"]["total"], eng / 1e6, wire / 1e6, r["wall_s"]),
                          flush=True)
    report["results"] = results
    text = table(results, args.rpn)
    goal_lines = goals(results, args.rpn)
    for nodes, g in sorted(report.get("gather_comm", {}).items()):
        p, L = 2 * args.rpn, args.rpn
        goal_lines.append("goal 3 (%d nodes, the collective alone, uncapped): hierarchical/flat all-gather time %.2f; "
                          "byte counts predict %.2f by the engine's ring accounting ((p-k)/(p-1)), %.2f on the wire "
                          "(Open MPI's linear all-gather: (J-1)/(p-L))"
                          % (nodes, g["hier_us"] / g["flat_us"], (p - L) / (p - 1), (p // L - 1) / (p - L)))
    for nodes, pr in sorted(report.get("probe", {}).items()):
        goal_lines.append("link (%d nodes): probe %.2f Mbit/s TCP payload vs %.2f expected at %s (%.3f)"
                          % (nodes, pr["measured_bps"] / 1e6, pr["expected_bps"] / 1e6, report["rate"],
                             pr["measured_bps"] / pr["expected_bps"]))
    title = ("cluster in a box: %s-like compute/comm, %s links, %d ranks/node, CPU cap %s core/rank"
             % (args.cluster, report["rate"], args.rpn, args.cpu_per_rank or "no"))
    print("\n" + title + "\n" + text + "\n\n" + "\n".join(goal_lines))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(title + "\n" + text + "\n\n" + "\n".join(goal_lines) + "\n")
    try:
        plot(results, os.path.join(args.out, "cluster.png"), title)
        print("wrote %s" % os.path.join(args.out, "cluster.png"))
    except ImportError:
        print("no matplotlib for this python (%s): no plot (Debian: apt-get install python3-matplotlib)"
              % sys.executable)
    print("wrote %s and %s" % (os.path.join(args.out, "table.txt"), os.path.join(args.out, "results.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
