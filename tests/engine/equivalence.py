"""The central test: with the same seed and global batch, ddp, zero3 and mics train the same model to
the same numbers as one process that accumulates to the same global batch, for worlds of 1, 2, 4 and 8
ranks, every valid partition size with 2 ranks per emulated node (so the hierarchical all-gather and
reduce-scatter run when p > 2), and grad_accum 1 and 4. Then: activation recomputation gives the same
losses and final weights bit for bit on several strategies and worlds; the flat reduce-scatter
(parallel.hierarchical = off) agrees with the hierarchical one within the summation-order tolerance.

Tolerances (fp32): the layouts differ only in the order in which per-rank gradients are summed
(reduce-scatter and all-reduce trees versus accumulation in one process; a hierarchical reduce-scatter sums
a node's p/J terms first, then the J node sums: one more order). Each sum of k terms
carries a relative rounding error of about k * 2^-24 ~ 1e-6 for k <= 32; after 20 Adam steps these
perturb the loss by far less than 1e-5 relative. Final parameters: Adam normalises each update to
about lr: where |g| >> eps a relative gradient error e moves the update by about lr * e (1e-9 here),
but a coordinate whose gradient is near zero can see a larger share of one update change. We bound the
largest parameter difference by 20 steps * lr * 0.005 = 1e-4 (half a percent of one update per step)
and the mean absolute difference by 1e-7 (a hundredth of that: almost every coordinate is in the
|g| >> eps regime)."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

STEPS = 20
LR = 1e-3
COMMON = ["--train.steps=%d" % STEPS, "--train.micro_batch=2", "--model.seq_len=32", "--train.val_every=0",
          "--log.level=warning", "--train.lr=%g" % LR, "--train.warmup_steps=2", "--train.grad_clip=1.0"]


def tiny_shards(p):
    """Shard elements c_u of each unit of the tiny preset (L=2, C=64, Vp=256, maxT=64) over p ranks:
    embedding Vp*C + maxT*C, blocks 12C^2 + 13C, final norm 2C, each padded to a multiple of p."""
    L, C, Vp, maxT = 2, 64, 256, 64
    units = [Vp * C + maxT * C] + [12 * C * C + 13 * C] * L + [2 * C]
    return [(n + p - 1) // p for n in units]


def read_llmc(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    assert header[0] == 20240326 and header[1] == 3, "not an llm.c v3 file: " + path
    n = (len(data) - 1024) // 4
    return struct.unpack("<%df" % n, data[1024:])


def steps(runner, name):
    """A run's step records (the metrics also hold validation and checkpoint records)."""
    return [m for m in runner.metrics(name) if "loss" in m]


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()
    deck = runner.deck("tiny.ini")
    references = {}

    def reference(micro_steps):
        if micro_steps not in references:
            name = "ref%d" % micro_steps
            runner.run_serial(["train", "--deck", deck] + COMMON +
                              ["--run.name=" + name, "--train.grad_accum=%d" % micro_steps,
                               "--train.save_final=final/%s.bin" % name])
            references[micro_steps] = (runner.losses(name), read_llmc(os.path.join(runner.dir, "final", name + ".bin")))
        return references[micro_steps]

    cases = []
    for world in (1, 2, 4, 8):
        rpn = 1 if world == 1 else 2
        for accum in (1, 4):
            cases.append((world, rpn, "ddp", None, accum))
            if world > 1:
                cases.append((world, rpn, "zero3", None, accum))
            for p in range(1, world + 1):
                valid = world % p == 0 and ((p <= rpn and rpn % p == 0) or (p > rpn and p % rpn == 0))
                if valid:
                    cases.append((world, rpn, "mics", p, accum))

    for world, rpn, strategy, p, accum in cases:
        name = "w%d_%s%s_a%d" % (world, strategy, "" if p is None else "_p%d" % p, accum)
        argv = ["train", "--deck", deck] + COMMON + [
            "--run.name=" + name, "--train.grad_accum=%d" % accum, "--parallel.strategy=" + strategy,
            "--topology.ranks_per_node=%d" % rpn, "--train.save_final=final/%s.bin" % name]
        if p is not None:
            argv.append("--parallel.partition_size=%d" % p)
        proc = runner.run_mpi(world, argv)
        losses = runner.losses(name)
        params = read_llmc(os.path.join(runner.dir, "final", name + ".bin"))
        ref_losses, ref_params = reference(world * accum)
        checks.check(len(losses) == STEPS, "%s logged %d steps" % (name, len(losses)))
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, ref_losses))
        checks.check(worst <= 1e-5, "%s: loss differs from one process by %.3g relative" % (name, worst))
        diffs = [abs(a - b) for a, b in zip(params, ref_params)]
        max_diff, mean_diff = max(diffs), sum(diffs) / len(diffs)
        checks.check(max_diff <= STEPS * LR * 0.005 and mean_diff <= 1e-7,
                     "%s: final parameters differ by max %.3g, mean %.3g" % (name, max_diff, mean_diff))
        print("%-22s %4.1fs  loss rel diff %.2e  param max diff %.2e mean %.2e" %
              (name, proc.seconds, worst, max_diff, mean_diff), flush=True)

    # Activation recomputation (train.recompute = blocks): the recomputed forward runs the same kernels on
    # the same inputs, so every loss and every final weight equals the run that keeps its activations, bit
    # for bit (the losses are logged with 9 significant digits, enough to tell any two floats apart).
    for world, rpn, strategy, p, accum in [(1, 1, "ddp", None, 4), (2, 2, "zero3", None, 1), (4, 2, "mics", 2, 4),
                                           (4, 2, "mics", 4, 1), (8, 2, "mics", 4, 4), (8, 2, "ddp", None, 1)]:
        base = "w%d_%s%s_a%d" % (world, strategy, "" if p is None else "_p%d" % p, accum)
        name = base + "_recompute"
        argv = ["train", "--deck", deck] + COMMON + [
            "--run.name=" + name, "--train.grad_accum=%d" % accum, "--parallel.strategy=" + strategy,
            "--topology.ranks_per_node=%d" % rpn, "--train.save_final=final/%s.bin" % name, "--train.recompute=blocks"]
        if p is not None:
            argv.append("--parallel.partition_size=%d" % p)
        proc = runner.run_mpi(world, argv)
        same_losses = runner.losses(name) == runner.losses(base)
        same_params = read_llmc(os.path.join(runner.dir, "final", name + ".bin")) == \
            read_llmc(os.path.join(runner.dir, "final", base + ".bin"))
        checks.check(same_losses and same_params, "%s: recompute changed the losses (%s) or the weights (%s)" %
                     (name, not same_losses, not same_params))
        print("%-22s %4.1fs  recompute = blocks: losses %s, weights %s" %
              (name, proc.seconds, "bit-identical" if same_losses else "DIFFER",
               "bit-identical" if same_params else "DIFFER"), flush=True)

    # Flat versus hierarchical reduce-scatter where the partition group spans nodes: the two sum each
    # gradient element's p terms in different orders (within 2*(p-1)*2^-24 of the sum of magnitudes of
    # each other), which after 20 steps stays far inside the 1e-5 relative loss tolerance. The
    # hierarchical side is the case loop's run (parallel.hierarchical = auto).
    for world, p, accum in [(4, 4, 1), (8, 8, 4), (8, 4, 1)]:
        hier = "w%d_mics_p%d_a%d" % (world, p, accum)
        name = hier + "_flat"
        runner.run_mpi(world, ["train", "--deck", deck] + COMMON + [
            "--run.name=" + name, "--train.grad_accum=%d" % accum, "--parallel.strategy=mics",
            "--topology.ranks_per_node=2", "--parallel.partition_size=%d" % p, "--parallel.hierarchical=off"])
        flat_m, hier_m = steps(runner, name), steps(runner, hier)
        worst = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(flat_m, hier_m))
        checks.check(worst <= 1e-5, "%s: flat and hierarchical reduce-scatter differ by %.3g relative" % (name, worst))
        # Across nodes the hierarchical step sends (J-1)/J of each gradient, the flat ring (p-1)/p: the
        # inter-node group carries the first, none of the flat run's reduce-scatters.
        # (rank 0's counters; a group kind that moved nothing is left out of the metrics.)
        def counter(metrics, kind, key):
            return metrics[-1]["traffic"].get(kind, {}).get(key, 0)
        checks.check(counter(hier_m, "inter_node", "collectives") > counter(flat_m, "inter_node", "collectives"),
                     "%s: the hierarchical run did not reduce-scatter across the inter-node group" % hier)
        print("%-22s loss rel diff flat vs hierarchical reduce-scatter %.2e; rank 0 off-node bytes: partition "
              "%d + inter-node %d (flat) vs %d + %d (hierarchical)" %
              (name, worst, counter(flat_m, "partition", "bytes_sent_off_node"),
               counter(flat_m, "inter_node", "bytes_sent_off_node"), counter(hier_m, "partition", "bytes_sent_off_node"),
               counter(hier_m, "inter_node", "bytes_sent_off_node")), flush=True)

    # Validation through the sharded forward (gathers with p > 1) sees the same sequences as one process
    # when the total number of validation sequences is the same: 4 ranks x 2 batches = 1 rank x 8.
    val_args = ["--train.val_every=10", "--train.val_batches=%d"]
    runner.run_serial(["train", "--deck", deck] + COMMON + ["--run.name=val_ref", "--train.grad_accum=4",
                                                           val_args[0], val_args[1] % 8])
    runner.run_mpi(4, ["train", "--deck", deck] + COMMON + [
        "--run.name=val_mics", "--parallel.strategy=mics", "--topology.ranks_per_node=2",
        "--parallel.partition_size=4", val_args[0], val_args[1] % 2])
    ref_val = [m["val_loss"] for m in runner.metrics("val_ref") if "val_loss" in m]
    mics_val = [m["val_loss"] for m in runner.metrics("val_mics") if "val_loss" in m]
    checks.check(len(ref_val) == 2 and len(mics_val) == 2, "validation ran %d and %d times" % (len(ref_val), len(mics_val)))
    worst = max(abs(a - b) / a for a, b in zip(ref_val, mics_val))
    checks.check(worst <= 1e-5, "validation loss under mics differs from one process by %.3g relative" % worst)
    print("%-22s val loss rel diff %.2e" % ("w4_mics_p4 validation", worst), flush=True)

    # bf16 gathers: the forward and backward see every weight rounded to bf16 (relative error at most
    # 2^-9 ~ 2e-3), the master weights stay fp32. The loss may move by that relative amount at most;
    # the gathers across nodes must carry exactly half the bytes of the fp32 run.
    # The fp32 side is the case loop's run of the same layout (fp32 gathers are the default).
    for strategy, p in (("mics", 4), ("zero3", None)):
        name = "w4_%s_gather_bf16" % strategy
        argv = ["train", "--deck", deck] + COMMON + [
            "--run.name=" + name, "--parallel.strategy=" + strategy, "--topology.ranks_per_node=2",
            "--parallel.gather_dtype=bf16"]
        if p is not None:
            argv.append("--parallel.partition_size=%d" % p)
        runner.run_mpi(4, argv)
        fp32 = steps(runner, "w4_%s%s_a1" % (strategy, "" if p is None else "_p%d" % p))
        bf16 = steps(runner, name)
        worst = max(abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(fp32, bf16))
        checks.check(worst <= 2 ** -9, "%s bf16 gathers: loss differs by %.3g relative" % (strategy, worst))
        kind = "inter_node" if strategy == "mics" else "partition"
        t32, t16 = fp32[-1]["traffic"][kind], bf16[-1]["traffic"][kind]
        if strategy == "mics":
            # The inter-node group also carries the fp32 hierarchical reduce-scatters: (J-1) = 1 shard of
            # every unit per micro-step, the same in both runs; the gathers' part must halve exactly.
            rs = sum(tiny_shards(4)) * 4
            checks.check(2 * (t16["bytes_sent"] - rs) == t32["bytes_sent"] - rs,
                         "bf16 gathers sent %d bytes across nodes, fp32 %d (reduce-scatters %d in both)" %
                         (t16["bytes_sent"], t32["bytes_sent"], rs))
        else:  # the zero3 partition group also carries the fp32 reduce-scatters: strictly less, not half
            checks.check(t16["bytes_sent"] < t32["bytes_sent"], "zero3 bf16 gathers did not reduce the bytes")
        print("%-22s loss rel diff vs fp32 gathers %.2e, %s bytes %d -> %d" %
              ("w4_%s_gather_bf16" % strategy, worst, kind, t32["bytes_sent"], t16["bytes_sent"]), flush=True)
    checks.finish()


if __name__ == "__main__":
    main()
