"""llm.c import end to end, and what bad model and data files do.

Round trip (one process, exact comparisons):
  A  trains K steps at a constant learning rate (no warm-up, min_lr_ratio 1) and writes its final weights
     with train.save_final = A.bin; it validates after step K.
  B  the same run for K + 1 steps: its first K steps are A's steps bit for bit (same seed, data, lr at
     every step), so its step K + 1 loss is the loss of A's final weights on the data of step index K.
  C  a new run with model.init = llmc:A.bin and train.lr = 1e-30 for K + 1 steps (the deck requires lr > 0).
     An Adam update is at most a few units in size, so lr * update <= ~1e-29, below half an ulp of any
     weight of magnitude >= 1e-20: p - lr * update rounds back to p, and a weight that is exactly 0 with a
     zero gradient (wte padding rows) stays 0. So every step of C evaluates A's final weights, unchanged;
     the test checks this directly (all of C's validation losses are identical). Step K + 1 of C sees
     the same batch as B's step K + 1.
  Checks: C's step K + 1 loss == B's step K + 1 loss, and C's validation loss == A's final validation loss,
  both exactly (fp32 weights round-trip through the file unchanged; the same kernels run on the same
  numbers in the same order). C's first loss is below A's first loss (same batch, trained vs initial
  weights), so a run that ignored model.init would fail.

Bad inputs, each under mpirun -np 2 (every rank must exit, not only the one that saw the error): a
truncated llm.c file, one of random bytes, one whose shape does not match the deck, a data pattern that
matches no file, and a truncated data shard. Each must exit non-zero and print an error naming the file
or the pattern. The runs have a 60 s timeout so that a rank left waiting in a collective fails the test
instead of hanging it; they normally end in about a second."""
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

K = 6
COMMON = ["--train.micro_batch=4", "--model.seq_len=32", "--train.warmup_steps=0", "--train.min_lr_ratio=1",
          "--train.val_batches=2", "--train.log_every=1", "--backend.threads=1", "--checkpoint.every_steps=0"]


def train(runner, name, extra, ranks=None, check=True):
    argv = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=" + name,
            "--checkpoint.dir=checkpoints/" + name] + COMMON + extra
    if ranks:
        return runner.run_mpi(ranks, argv, timeout=60, check=check)
    return runner.run_serial(argv, timeout=120, check=check)


def records(runner, name):
    metrics = runner.metrics(name)
    return [m["loss"] for m in metrics if "loss" in m], [m["val_loss"] for m in metrics if "val_loss" in m]


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()

    # --- round trip ---------------------------------------------------------------------------------------
    train(runner, "a", ["--train.steps=%d" % K, "--train.lr=1e-2", "--train.val_every=%d" % K,
                        "--train.save_final=models/A.bin"])
    train(runner, "b", ["--train.steps=%d" % (K + 1), "--train.lr=1e-2", "--train.val_every=0"])
    train(runner, "c", ["--train.steps=%d" % (K + 1), "--train.lr=1e-30", "--train.val_every=1",
                        "--model.init=llmc:models/A.bin"])
    a_loss, a_val = records(runner, "a")
    b_loss, _ = records(runner, "b")
    c_loss, c_val = records(runner, "c")
    checks.check(len(a_loss) == K and len(b_loss) == K + 1 and len(c_loss) == K + 1, "one loss per step")
    checks.check(b_loss[:K] == a_loss, "B's first %d steps repeat A's exactly: %s vs %s" % (K, b_loss[:K], a_loss))
    print("step %d loss: B (trained in-run) %.9g, C (loaded from A.bin) %.9g" % (K + 1, b_loss[K], c_loss[K]))
    checks.check(c_loss[K] == b_loss[K], "loaded weights give B's step %d loss exactly (%.9g vs %.9g)"
                 % (K + 1, c_loss[K], b_loss[K]))
    print("val loss: A after step %d %s, C at step 1 %s" % (K, a_val, c_val[:1]))
    checks.check(len(a_val) == 1 and len(c_val) == K + 1 and c_val[0] == a_val[0],
                 "C's validation loss equals A's final validation loss exactly")
    checks.check(len(set(c_val)) == 1, "lr 1e-30 leaves the weights unchanged: every validation equal (%s)" % c_val)
    checks.check(c_loss[0] < a_loss[0] - 0.05, "C starts from trained weights: first loss %.4f below A's %.4f"
                 % (c_loss[0], a_loss[0]))

    # --- bad model files ------------------------------------------------------------------------------------
    model_dir = os.path.join(runner.dir, "models")
    with open(os.path.join(model_dir, "A.bin"), "rb") as f:
        good = f.read()
    bad_files = {
        "short-header.bin": good[:600],                # shorter than the 1024-byte header
        "truncated.bin": good[:1024 + len(good) // 3],  # header intact, weights cut
        "garbage.bin": bytes(random.Random(5).getrandbits(8) for _ in range(8192)),
    }
    for fname, content in bad_files.items():
        with open(os.path.join(model_dir, fname), "wb") as f:
            f.write(content)

    def expect_failure(label, proc, needle):
        out = proc.stdout + proc.stderr
        ok = checks.check(proc.returncode != 0, "%s: exits non-zero (got %d)" % (label, proc.returncode))
        # The error line itself (the log also echoes the deck, which names the file too)
        lines = [line for line in out.splitlines() if needle in line and "error" in line.lower()]
        ok = checks.check(bool(lines), "%s: an error line names %s" % (label, needle)) and ok
        print("%-22s rc=%d in %.1f s: %s" % (label, proc.returncode, proc.seconds, lines[0][-160:] if lines else "?"))
        if not ok:
            print(out[-2000:])

    for fname in bad_files:
        path = "models/" + fname
        proc = train(runner, "bad-" + fname, ["--train.steps=1", "--model.init=llmc:" + path], ranks=2, check=False)
        expect_failure(fname, proc, path)
    proc = train(runner, "bad-shape", ["--train.steps=1", "--model.layers=3", "--model.init=llmc:models/A.bin"],
                 ranks=2, check=False)
    expect_failure("shape mismatch", proc, "models/A.bin")
    checks.check(any("layers" in line and "error" in line.lower() for line in (proc.stdout + proc.stderr).splitlines()),
                 "shape mismatch: the error names the field (layers)")

    # --- bad data ------------------------------------------------------------------------------------------------
    pattern = "data/missing/train_*.bin"
    proc = train(runner, "bad-glob", ["--train.steps=1", "--data.train=" + pattern], ranks=2, check=False)
    expect_failure("no shard matches", proc, pattern)

    cut_dir = os.path.join(runner.dir, "data", "cut")
    shutil.copytree(os.path.join(runner.dir, "data", "synth"), cut_dir)
    shards = sorted(f for f in os.listdir(cut_dir) if f.startswith("train_"))
    cut = os.path.join(cut_dir, shards[0])
    size = os.path.getsize(cut)
    with open(cut, "r+b") as f:
        f.truncate(1024 + (size - 1024) // 2 + 1)  # half the tokens and one odd byte
    proc = train(runner, "bad-shard", ["--train.steps=1", "--data.train=data/cut/train_*.bin"], ranks=2, check=False)
    expect_failure("truncated shard", proc, "data/cut/" + shards[0])

    checks.finish()


if __name__ == "__main__":
    main()
