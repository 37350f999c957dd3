"""data.order = sequential: the global batch of step s is the same for every layout with the same global
batch (8 sequences here): 1 rank x 4 micro-steps, 2 ranks x 2, 4 ranks x 1 (mics, p = 2 on 2 emulated
nodes), and 2 ranks with micro_batch 4. The per-step losses must agree within the equivalence test's
fp32 tolerance (1e-5 relative; see tests/engine/equivalence.py); the shuffled order gives other losses.
The window arithmetic itself (which tokens step s reads) is the unit test in tests/data/test_sampler.cpp."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

STEPS = 12
COMMON = ["--train.steps=%d" % STEPS, "--model.seq_len=32", "--train.val_every=0", "--log.level=warning",
          "--train.lr=1e-3", "--train.warmup_steps=2", "--checkpoint.at_end=false", "--data.order=sequential"]


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=40000)
    checks = mics_test.Checks()
    deck = runner.deck("tiny.ini")
    layouts = {
        "w1_a4": (1, ["--train.micro_batch=2", "--train.grad_accum=4"]),
        "w2_a2": (2, ["--train.micro_batch=2", "--train.grad_accum=2", "--parallel.strategy=ddp"]),
        "w4_a1": (4, ["--train.micro_batch=2", "--train.grad_accum=1", "--topology.ranks_per_node=2",
                      "--parallel.partition_size=2"]),
        "w2_b4": (2, ["--train.micro_batch=4", "--train.grad_accum=1", "--parallel.strategy=zero3"]),
    }
    losses = {}
    for name, (ranks, extra) in layouts.items():
        argv = ["train", "--deck", deck, "--run.name=" + name] + COMMON + extra
        proc = runner.run_serial(argv) if ranks == 1 else runner.run_mpi(ranks, argv)
        losses[name] = runner.losses(name)
        checks.check(len(losses[name]) == STEPS, "%s logged %d steps" % (name, len(losses[name])))
        print("%-6s %5.1fs  %s" % (name, proc.seconds, " ".join("%.6f" % l for l in losses[name][:4])), flush=True)
    ref = losses["w1_a4"]
    for name, values in losses.items():
        worst = max(abs(a - b) / abs(b) for a, b in zip(values, ref))
        checks.check(worst <= 1e-5, "%s: per-step loss differs from w1_a4 by %.3g relative" % (name, worst))
    runner.run_serial(["train", "--deck", deck, "--run.name=shuffled"] + COMMON +
                      ["--data.order=shuffle", "--train.micro_batch=2", "--train.grad_accum=4"])
    shuffled = runner.losses("shuffled")
    checks.check(max(abs(a - b) for a, b in zip(shuffled[1:], ref[1:])) > 1e-4,
                 "the shuffled order reads other batches")
    # a global batch larger than every shard is refused with a message naming the key
    proc = runner.run_serial(["train", "--deck", deck, "--run.name=huge"] + COMMON +
                             ["--train.micro_batch=4096", "--model.seq_len=64"], check=False)
    checks.check(proc.returncode == 2 and "data.order = sequential" in proc.stderr,
                 "too large a step for the shards: %d %s" % (proc.returncode, proc.stderr[-300:]))
    checks.finish()


if __name__ == "__main__":
    main()
