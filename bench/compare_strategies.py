#!/usr/bin/env python3
"""ddp, zero3 and mics side by side: the same model and per-rank batch at 4 and 8 ranks on 2 emulated
nodes (topology.ranks_per_node = world / 2), one table.

    python3 bench/compare_strategies.py --mics build/mics [--worlds 4,8] [--steps 12] [--layers 4 --channels 128]

Columns
  tokens/s      global tokens per second, median over the steps after the first two (warm-up), from the
                per-step metrics (runs/<name>/metrics.jsonl, written by rank 0).
  x-node/step   bytes that cross the node boundary in one optimizer step, summed over ALL ranks, under the
                ring model the engine's traffic counters use: in every collective each member sends its
                bytes to its ring successor (the next member by rank, wrapping around), and a byte crosses
                nodes when that successor lives on another node. The metrics carry rank 0's counters only;
                every member of a group sends the same bytes (shards are padded to equal size), so for each
                group kind the total is rank 0's bytes_sent for that kind times the number of ranks, over
                all groups of that kind, whose ring successor is on another node (counted from the layout
                below). The world group is left out: it only carries the 8-byte loss all-reduce for the log.
                The script checks the layout against rank 0's own bytes_sent_off_node.
  sent/step     all bytes sent by all ranks per optimizer step (same model, no node filter).
  states/rank   model-state memory per rank: master weights, Adam m and v, gradient accumulator
                (16 B/param / p), as the run logs it in `memory per rank (planned before allocation): model states ...`.

Groups (the engine's layout, docs/algorithms.md#groups): partition groups of p consecutive ranks; replication groups of the
ranks holding the same shard (rank % p equal); when a partition group spans J nodes with L = p / J ranks
on each, intra-node groups (its L ranks on one node) and inter-node groups (its J ranks with the same
index inside their node). Nodes are blocks of ranks_per_node consecutive ranks.

The model is a small custom GPT-2 shape on the synthetic byte-level corpus, so a whole sweep takes a couple
of minutes on two cores; the numbers that matter across strategies are the bytes and the memory, which do
not depend on the machine. Timings on an oversubscribed CPU are noisy: compare within one table.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# The group layout is the one the cluster-in-a-box scripts use (tests/cluster/clusterlib.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
from clusterlib import groups_of  # noqa: E402

KINDS = ("world", "node", "partition", "replication", "intra_node", "inter_node")


def off_node_senders(members, rpn):
    """Members whose ring successor is on another node."""
    if len(members) < 2:
        return []
    return [m for i, m in enumerate(members) if m // rpn != members[(i + 1) % len(members)] // rpn]


def cross_node_bytes(traffic, world, rpn, p):
    """(bytes crossing nodes, bytes sent) per optimizer step over all ranks; checks rank 0 against the model."""
    crossing = sent = 0
    for kind, t in traffic.items():
        if kind == "world" or t["collectives"] == 0:
            continue
        groups = groups_of(kind, world, rpn, p)
        if len(groups[0]) != t["participants"]:
            raise SystemExit("layout model disagrees with the run: %s groups of %d, metrics say %d participants"
                             % (kind, len(groups[0]), t["participants"]))
        senders = [m for g in groups for m in off_node_senders(g, rpn)]
        members = sum(len(g) for g in groups if len(g) > 1)
        crossing += t["bytes_sent"] * len(senders)
        sent += t["bytes_sent"] * members
        rank0_crosses = 0 in senders
        expected = t["bytes_sent"] if rank0_crosses else 0
        if t["bytes_sent_off_node"] != expected:
            raise SystemExit("layout model disagrees with rank 0's counters for %s: off-node %d, expected %d"
                             % (kind, t["bytes_sent_off_node"], expected))
    return crossing, sent


def parse_size(text):
    value, unit = text.split()
    return float(value) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]


def human(n):
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return ("%.0f %s" if unit == "B" else "%.2f %s") % (n, unit)
        n /= 1000.0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mics", required=True, help="the mics executable")
    ap.add_argument("--mpiexec", default="mpirun")
    ap.add_argument("--source-dir", default=os.path.dirname(here))
    ap.add_argument("--worlds", default="4,8")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per run")
    args = ap.parse_args()
    mics = os.path.abspath(args.mics)
    deck = os.path.join(args.source_dir, "inputs", "tiny.ini")
    worlds = [int(w) for w in args.worlds.split(",")]

    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="mics-strategies-") as scratch:
        subprocess.run([mics, "data", "synth", "data/synth", "--tokens", "200000", "--seed", "3"], cwd=scratch,
                       env=env, check=True, capture_output=True, text=True)
        print("model: GPT-2 L=%d NH=%d C=%d V=256 T=%d, micro-batch %d per rank, %d steps (median after 2)"
              % (args.layers, args.heads, args.channels, args.seq_len, args.micro_batch, args.steps))
        print("%-6s %5s %4s %3s %3s | %10s %13s %13s %12s %8s" % (
            "ranks", "nodes", "strat", "p", "r", "tokens/s", "x-node/step", "sent/step", "states/rank", "wall s"))
        for world in worlds:
            rpn = world // 2
            for strategy in ("ddp", "zero3", "mics"):
                p = {"ddp": 1, "zero3": world, "mics": rpn}[strategy]
                name = "%s-%d" % (strategy, world)
                cmd = [args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np",
                       str(world), mics, "train", "--deck", deck, "--run.name=" + name,
                       "--topology.ranks_per_node=%d" % rpn, "--parallel.strategy=" + strategy,
                       "--model.layers=%d" % args.layers, "--model.heads=%d" % args.heads,
                       "--model.channels=%d" % args.channels, "--model.seq_len=%d" % args.seq_len,
                       "--train.micro_batch=%d" % args.micro_batch, "--train.steps=%d" % args.steps,
                       "--train.val_every=0", "--train.log_every=%d" % args.steps, "--backend.threads=1",
                       "--checkpoint.dir=checkpoints/" + name, "--checkpoint.every_steps=0"]
                if strategy == "mics":
                    cmd.append("--parallel.partition_size=%d" % p)
                start = time.monotonic()
                proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True,
                                      timeout=args.timeout)
                wall = time.monotonic() - start
                if proc.returncode != 0:
                    sys.stderr.write("%s failed (%d):\n%s\n%s\n" % (" ".join(cmd), proc.returncode,
                                                                  proc.stdout[-3000:], proc.stderr[-3000:]))
                    return 1
                log = proc.stdout + proc.stderr
                m = re.search(r"memory per rank[^:]*: model states ([0-9.]+ [kMGT]?B)", log)
                states = parse_size(m.group(1)) if m else float("nan")
                with open(os.path.join(scratch, "runs", name, "metrics.jsonl")) as f:
                    records = [json.loads(line) for line in f if line.strip()]
                steps = [r for r in records if "tokens_per_s" in r]
                rates = [r["tokens_per_s"] for r in steps[2:]] or [r["tokens_per_s"] for r in steps]
                crossing, sent = cross_node_bytes(steps[-1]["traffic"], world, rpn, p)
                print("%-6d %5d %5s %3d %3d | %10.0f %13s %13s %12s %8.1f" % (
                    world, 2, strategy, p, world // p, statistics.median(rates), human(crossing), human(sent),
                    human(states), wall), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
