"""Non-finite training and out-of-range values: nothing non-finite is ever applied or committed.

1. stop (the default): from a checkpoint at step 3, a learning rate and weight decay whose product
   overflows float make the AdamW update overflow at step 4: the run stops with exit 1 naming the step and the update, within seconds, and no
   checkpoint after step 3 is written; step_3 verifies and resumes to the reference losses.
2. skip: the same with train.nonfinite = skip and a checkpoint every step: steps 4 and 5 are skipped (the
   metrics mark them), their checkpoints hold exactly step 3's parameters (the exports are identical),
   and the third refused step in a row (train.max_skipped_steps = 2) stops the run with exit 1.
3. A loss that is not finite (a learning rate that is large but finite: the update applies, the next
   forward overflows) stops the run naming the loss; every committed checkpoint verifies (all finite).
4. Out-of-range values are refused before training, with exit 2 naming the key: a step count past the
   int range (once trained 1 step and exited 0), a learning rate that overflows float (once became inf and
   committed NaN weights), a negative keep count."""
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
import mics_test  # noqa: E402

STEPS = 8
# lr x weight_decay x p overflows float (FLT_MAX is 3.4e38) for every matrix element, at every step: the
# update is refused deterministically while the loss and the gradient stay finite.
OVERFLOW = ["--train.lr=1e20", "--train.weight_decay=1e30", "--train.warmup_steps=0", "--train.min_lr_ratio=1"]


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def main():
    args = mics_test.parse_args()
    faults = faultlib.Faults(args)
    reference_argv = faults.train_argv("ref", "--train.steps=%d" % STEPS, "--checkpoint.every_steps=0",
                                       "--checkpoint.at_end=false")
    faults.run("reference", reference_argv, 0, 60)
    reference = faults.losses("ref")

    # 1. stop.
    faults.run("stop: first 3 steps", faults.train_argv("stop", "--train.steps=3", "--checkpoint.every_steps=3"), 0, 60)
    log = faults.run("stop: overflow", faults.train_argv("stop", "--train.steps=%d" % STEPS, "--checkpoint.every_steps=1",
                                                         *OVERFLOW),
                     1, 30, ["training stopped at step 4: the update is not finite",
                             "no parameter or moment was changed"])
    entries = sorted(os.listdir(faults.run_dir("stop")))
    faults.checks.check(entries == ["latest", "step_3"], "stop: nothing after step_3 was written: %s" % entries)
    faults.newest_verifies("stop", "stop")
    faults.run("stop: resume", faults.train_argv("stop", "--train.steps=%d" % STEPS, "--checkpoint.every_steps=0"),
               0, 60, ["resumed from ckpt/stop/step_3 "])
    faults.same_losses("stop", "stop", reference, 3)

    # 2. skip: the skipped steps change nothing.
    faults.run("skip: first 3 steps", faults.train_argv("skip", "--train.steps=3", "--checkpoint.every_steps=3"), 0, 60)
    log = faults.run("skip: overflow", faults.train_argv("skip", "--train.steps=%d" % STEPS, "--checkpoint.every_steps=1",
                                                         "--train.nonfinite=skip", "--train.max_skipped_steps=2",
                                                         *OVERFLOW),
                     1, 30, ["step 4: the update is not finite", "skipping the step (train.nonfinite = skip; 1 in a row",
                             "training stopped at step 6", "3 steps in a row were not finite"])
    skipped = [m["step"] for m in faults.runner.metrics("skip") if m.get("skipped") == "update"]
    faults.checks.check(skipped == [4, 5], "skip: the metrics mark steps 4 and 5 as skipped: %s" % skipped)
    exports = {}
    for step in (3, 4, 5):
        out = os.path.join(faults.dir, "skip_%d.bin" % step)
        faults.serial("skip export %d" % step, ["export", os.path.join(faults.run_dir("skip"), "step_%d" % step),
                                                "--format", "llmc", out], 0)
        exports[step] = md5(out)
    faults.checks.check(exports[3] == exports[4] == exports[5],
                        "skip: the checkpoints of the skipped steps hold step 3's parameters: %s" % exports)

    # 3. A loss that is not finite.
    log = faults.run("loss", faults.train_argv("loss", "--train.steps=%d" % STEPS, "--train.lr=3e38",
                                               "--train.warmup_steps=0", "--train.grad_clip=0",
                                               "--checkpoint.every_steps=1"),
                     1, 30, ["the loss is not finite"])
    for entry in sorted(os.listdir(faults.run_dir("loss"))):
        if entry.startswith("step_"):
            faults.serial("loss verify " + entry, ["ckpt", "verify", os.path.join(faults.run_dir("loss"), entry)], 0)

    # 4. Out of range, before training.
    for case, option, needle in [("steps past int", "--train.steps=4294967297", "train.steps"),
                                 ("lr overflows float", "--train.lr=1e300", "train.lr"),
                                 ("negative keep", "--checkpoint.keep=-1", "checkpoint.keep")]:
        faults.run(case, faults.train_argv("range", option), 2, 30, [needle])
    faults.checks.finish()


if __name__ == "__main__":
    main()
