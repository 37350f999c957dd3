"""Integrity: a checkpoint that was never committed or that fails its checksums is never used silently.

1. kill -9 of one rank while step_10 is being written (writes slowed by MICS_CHECKPOINT_WRITE_DELAY_MS,
   the kill sent as soon as step_10.partial appears): step_5 stays committed, `latest` names it, it
   verifies, and auto resume skips step_10.partial with a warning naming it and completes the run with
   exactly the losses of an uninterrupted run.
2. Bytes flipped inside the data of /params/wte.weight of the newest checkpoint: mics ckpt verify exits
   non-zero naming that dataset (its piece in the rank file that holds it); auto resume warns naming the checkpoint and falls back to the previous
   one (the ranks whose chunk is damaged and the others agree); naming it with train.resume=PATH is an
   error naming it, on every rank.
3. train.resume=PATH of a .partial directory is an error saying it is not committed.
4. One writer rank fails part-way through its file (MICS_CHECKPOINT_FAIL_RANK) while its peers write
   theirs: the job stops within seconds (no hang) naming the checkpoint, `latest` still names the
   previous checkpoint, and the run resumes from it."""
import os
import shutil
import time

import ckpt_test
from ckpt_test import mics_test


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()
    layout = ckpt_test.REFERENCE_LAYOUT

    runner.run_mpi(4, ckpt_test.train_argv(runner, "ref", *layout))
    reference = runner.losses("ref")

    # 1. kill -9 during a write.
    name = "killed"
    rdir = ckpt_test.run_dir(runner, name)
    partial = os.path.join(rdir, "step_10.partial")
    proc = ckpt_test.start_mpi(runner, 4, ckpt_test.train_argv(runner, name, "--checkpoint.every_steps=5", *layout),
                               os.path.join(runner.dir, "killed.log"),
                               env={"MICS_CHECKPOINT_WRITE_DELAY_MS": "20"})
    try:
        ckpt_test.wait_for(lambda: os.path.isdir(partial), 60, partial)
        os.kill(ckpt_test.rank_pid(proc.pid, 1), 9)
        proc.wait(timeout=60)
    finally:
        ckpt_test.stop_group(proc)
    checks.check(proc.returncode != 0, "the job with a killed rank failed (%d)" % proc.returncode)
    checks.check(os.path.isdir(partial) and not os.path.exists(os.path.join(rdir, "step_10")),
                 "the interrupted write left only step_10.partial")
    with open(os.path.join(rdir, "latest")) as f:
        checks.check(f.read().strip() == "step_5", "latest still names step_5")
    verify = runner.run_serial(["ckpt", "verify", os.path.join(rdir, "step_5")], check=False)
    checks.check(verify.returncode == 0, "step_5 verifies after the kill: " + verify.stderr)
    listing = runner.run_serial(["ckpt", "list", rdir]).stdout
    checks.check("partial" in listing, "ckpt list shows the partial checkpoint:\n" + listing)

    # Resume (no slow writes now): skips the partial one, continues from step 5, same losses.
    resumed = runner.run_mpi(4, ckpt_test.train_argv(runner, name, "--checkpoint.every_steps=5", *layout))
    log = resumed.stdout + resumed.stderr
    checks.check("skipping ckpt/%s/step_10.partial" % name in log, "auto resume names the partial checkpoint it skips")
    checks.check("resumed from ckpt/%s/step_5 " % name in log, "resumed from step_5")
    losses = runner.losses(name)
    checks.check(losses[-15:] == reference[5:], "resumed losses equal the uninterrupted run's")

    # 2. Corruption inside a dataset's data: find wte's bytes (export the parameters to llm.c).
    newest = os.path.join(rdir, "step_20")
    llmc = os.path.join(runner.dir, "step20.bin")
    runner.run_serial(["export", newest, "--format", "llmc", llmc])
    _, weights = ckpt_test.read_llmc(llmc)
    # The file that holds them: the index (format 3 keeps the tensors in the rank files it maps).
    hits = []
    for entry in sorted(os.listdir(newest)):
        with open(os.path.join(newest, entry), "rb") as f:
            data = bytearray(f.read())
        at = data.find(weights[:64])  # wte is the first tensor of an llm.c file
        if at >= 0:
            hits.append((entry, at, data))
    checks.check(len(hits) == 1 and hits[0][2].find(weights[:64], hits[0][1] + 1) < 0,
                 "wte's bytes found once in the checkpoint's files: %s" % [h[0] for h in hits])
    entry, at, data = hits[0]
    for i in range(16):
        data[at + 4 * i + 1] ^= 0xFF
    with open(os.path.join(newest, entry), "wb") as f:
        f.write(data)
    verify = runner.run_serial(["ckpt", "verify", newest], check=False)
    checks.check(verify.returncode != 0 and "/params/wte.weight" in verify.stderr,
                 "ckpt verify names the damaged dataset: %d %s" % (verify.returncode, verify.stderr))
    checks.check(verify.stderr.count("mics ckpt verify:") == 1, "only the damaged dataset is reported")

    # (no final checkpoint: it would replace the damaged step_20 that the next check names explicitly)
    fallback = runner.run_mpi(4, ckpt_test.train_argv(runner, name, "--run.name=" + name, "--train.steps=20",
                                                      *layout, "--train.resume=auto", "--checkpoint.at_end=false"))
    log = (fallback.stdout + fallback.stderr).replace(runner.dir + "/", "")
    checks.check("skipping ckpt/%s/step_20" % name in log and "wte.weight" in log,
                 "auto resume warns naming the damaged checkpoint and dataset")
    checks.check("resumed from ckpt/%s/step_15" % name in log, "auto resume fell back to step_15")

    explicit = runner.run_mpi(4, ckpt_test.train_argv(runner, "explicit", "--train.resume=" + newest, *layout),
                              check=False)
    log = explicit.stdout + explicit.stderr
    checks.check(explicit.returncode not in (0, 75) and newest in log and "wte.weight" in log,
                 "an explicitly named damaged checkpoint is an error naming it: %d\n%s" % (explicit.returncode, log[-2000:]))

    # 3. An explicitly named .partial directory.
    shutil.copytree(os.path.join(rdir, "step_15"), os.path.join(rdir, "step_25.partial"))
    named = runner.run_mpi(4, ckpt_test.train_argv(runner, "partial", "--train.resume=" + os.path.join(rdir, "step_25.partial"),
                                                   *layout), check=False)
    log = named.stdout + named.stderr
    checks.check(named.returncode not in (0, 75) and "not committed" in log, "a named .partial is refused: " + log[-1000:])

    # 4. A writer that fails part-way: the others are inside the file's collectives. step_5 is committed
    # first; the run that goes on to step 10 fails while writing step_10.
    name = "writefail"
    rdir = ckpt_test.run_dir(runner, name)
    runner.run_mpi(4, ckpt_test.train_argv(runner, name, "--checkpoint.every_steps=5", "--train.steps=5", *layout))
    log_path = os.path.join(runner.dir, "writefail.log")
    proc = ckpt_test.start_mpi(runner, 4, ckpt_test.train_argv(runner, name, "--checkpoint.every_steps=5",
                                                                "--train.steps=10", *layout),
                               log_path, env={"MICS_CHECKPOINT_FAIL_RANK": "1"})
    start = time.monotonic()
    try:
        proc.wait(timeout=60)  # a hang ends the test here
    finally:
        ckpt_test.stop_group(proc)
    seconds = time.monotonic() - start
    with open(log_path) as f:
        log = f.read()
    checks.check(proc.returncode not in (0, 75), "a failed writer stops the job (rc %s)" % proc.returncode)
    checks.check(seconds < 30, "the job stopped in %.1f s" % seconds)
    checks.check("injected write failure" in log and "step_10" in log, "the message names the checkpoint:\n" + log[-1500:])
    checks.check(not os.path.exists(os.path.join(rdir, "step_10")), "the failed checkpoint was not committed")
    with open(os.path.join(rdir, "latest")) as f:
        checks.check(f.read().strip() == "step_5", "latest still names step_5")
    resumed = runner.run_mpi(4, ckpt_test.train_argv(runner, name, "--checkpoint.every_steps=5", "--train.steps=10",
                                                     *layout))
    checks.check("resumed from ckpt/%s/step_5 " % name in (resumed.stdout + resumed.stderr).replace(runner.dir + "/", ""),
                 "the next run resumed from step_5")
    checks.check(os.path.isdir(os.path.join(rdir, "step_10")), "and wrote step_10")
    checks.finish()


if __name__ == "__main__":
    main()
