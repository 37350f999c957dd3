#!/usr/bin/env python3
"""cluster.shaped_link: two emulated nodes (network namespaces on a bridge, each link shaped with tc
tbf to 100 Mbit/s each way), 2 ranks per node, mics with p = ranks per node (auto: the engine finds
the nodes through MPI's shared-memory split, since every node has its own hostname).

Checks
  probe     a TCP stream node 1 -> node 2 carries 100 Mbit/s * 1448/1514 of payload (tbf shapes whole
            frames) within 10%.
  topology  rank 0's counters show partition groups of 2 inside a node and replication groups of 2
            across nodes, with bytes sent off-node: the engine saw 2 nodes.
  bytes     per optimizer step, the TCP payload each node sent (kernel counters of its link:
            tx_bytes - 66 * tx_packets, see clusterlib.py) equals the engine's bytes_sent_off_node
            summed over the node's ranks within 5%. Startup (MPI wire-up, data loading) and shutdown
            traffic are taken out by running 3 and 9 steps and dividing the difference by 6. What
            remains beyond the engine's bytes: Open MPI's own headers per fragment (tens of bytes per
            fragment of up to 128 kB) and its rendezvous control messages (a few per collective),
            well under 1% at the shard sizes here; 5% leaves room for stray frames (ARP).
            With p = 2 on 2 nodes the only collectives that cross nodes run over 2 ranks (the
            replication all-reduce of the gradient shards, the loss all-reduce), where Open MPI's
            algorithms and the engine's ring accounting send the same bytes each way.
  losses    the 9-step run's losses equal one process's that accumulates the same global batch
            (grad_accum 4) within 1e-5 relative (engine_equivalence argues the tolerance).

Exit status 77 (skipped) with the reason when this host cannot build namespaces (not root, no ip,
tc, unshare or mpirun, no sch_tbf, no veth or bridge).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
sys.path.insert(0, HERE)
import clusterlib  # noqa: E402
import mics_test  # noqa: E402

RATE = "100mbit"
RANKS, RPN = 4, 2
SHORT, LONG = 3, 9
COMMON = ["--model.seq_len=32", "--train.micro_batch=2", "--train.val_every=0", "--log.level=warning",
          "--train.lr=1e-3", "--train.warmup_steps=2", "--train.grad_clip=1.0", "--train.resume=never",
          "--checkpoint.every_steps=0", "--backend.threads=1"]


def main():
    reason = clusterlib.why_not()
    if reason:
        print("SKIPPED: cannot build emulated nodes on this host: " + reason)
        return clusterlib.SKIP
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()
    deck = runner.deck("tiny.ini")
    name = "ct%d" % (os.getpid() % 10 ** 8)

    with clusterlib.Cluster(name, nodes=2, rate=RATE, slots=RPN) as cluster:
        configured = clusterlib.parse_rate(RATE)
        measured, raw = cluster.probe(1, 2, seconds=2.0)
        expected = clusterlib.payload_rate(configured)
        print("probe: %.2f Mbit/s of TCP payload (mss %d), shaped %s -> expected %.2f Mbit/s (ratio %.3f)"
              % (measured / 1e6, raw["mss"], RATE, expected / 1e6, measured / expected), flush=True)
        checks.check(abs(measured / expected - 1) <= 0.10,
                     "probe rate %.2f Mbit/s is not within 10%% of %.2f" % (measured / 1e6, expected / 1e6))

        sent = {}
        for steps in (SHORT, LONG):
            run = "mics%d" % steps
            before = cluster.counters()
            rc, out = cluster.mpirun(RANKS, [args.mics, "train", "--deck", deck, "--run.name=" + run,
                                             "--train.steps=%d" % steps, "--parallel.strategy=mics"] + COMMON,
                                     cwd=runner.dir, timeout=60)
            after = cluster.counters()
            if rc != 0:
                print(out[-4000:])
                checks.check(False, "mics on the cluster exited %d" % rc)
                return checks.finish()
            sent[steps] = {n: clusterlib.payload(after[n]) - clusterlib.payload(before[n]) for n in after}
            drops = sum(after[n][4] - before[n][4] for n in after)
            checks.check(drops == 0, "%s: tc dropped %d packets (retransmissions would count)" % (run, drops))

        metrics = runner.metrics("mics%d" % LONG)
        traffic = [m for m in metrics if "traffic" in m][-1]["traffic"]  # the last step's
        checks.check(traffic["partition"]["participants"] == 2 and traffic["replication"]["participants"] == 2
                     and traffic["replication"]["bytes_sent_off_node"] > 0,
                     "the engine did not see 2 nodes of 2 ranks: %s" % traffic)
        engine = clusterlib.engine_node_bytes(traffic, RANKS, RPN, 2)
        for node in sorted(engine):
            kernel = (sent[LONG][node] - sent[SHORT][node]) / (LONG - SHORT)
            ratio = kernel / engine[node] if engine[node] else float("inf")
            print("node %d: kernel %d B of TCP payload per step, engine %d B off-node per step (ratio %.4f)"
                  % (node, kernel, engine[node], ratio), flush=True)
            checks.check(abs(ratio - 1) <= 0.05, "node %d: kernel/engine bytes ratio %.4f" % (node, ratio))

    losses = [m["loss"] for m in metrics if "loss" in m]
    runner.run_serial(["train", "--deck", deck, "--run.name=ref", "--train.steps=%d" % LONG,
                       "--train.grad_accum=%d" % RANKS] + COMMON)
    ref = runner.losses("ref")
    checks.check(len(losses) == LONG, "the cluster run logged %d steps, not %d" % (len(losses), LONG))
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    print("losses: largest relative difference from one process %.2e" % worst)
    checks.check(worst <= 1e-5, "losses differ from one process by %.3g relative" % worst)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
