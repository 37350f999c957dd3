"""Checkpoints that cannot be written stop the run with their own exit status (74), never a warning and
a success, and never a requeue status (75):

1. checkpoint.dir on a tmpfs that holds one checkpoint but not two: the first commits; the second fails
   while written (no space left). The job stops within seconds with 74 and the reason; `latest` still
   names the first one, which verifies and resumes.
2. The same, stopped by SIGUSR1 at a step whose checkpoint cannot be written: 74, not 75.
3. checkpoint.dir is a regular file: refused before training starts (2), naming the key.
4. checkpoint.dir turns read-only (remount) while the job runs: the next checkpoint stops the job with 74
   and "Read-only file system"; `latest` names the previous one, which verifies.
5. checkpoint.dir read-only from the start: refused before training (2), naming the key.

Root is needed to mount the tmpfs (the test's own, in its scratch directory, unmounted at the end);
elsewhere the test skips with 77."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
import ckpt_test  # noqa: E402
import mics_test  # noqa: E402

EXIT_CHECKPOINT = 74
LAYOUT = ["--topology.ranks_per_node=2", "--parallel.partition_size=2", "--train.micro_batch=2",
          "--model.seq_len=32"]


def checkpoint_bytes(runner, name):
    """The size of one committed checkpoint of the tiny model, measured on ordinary disk."""
    runner.run_mpi(4, ["train", "--deck", runner.deck("tiny.ini"), "--run.name=" + name, "--train.steps=1",
                       "--train.val_every=0", "--checkpoint.every_steps=1", "--checkpoint.dir=probe"] + LAYOUT)
    step = os.path.join(runner.dir, "probe", name, "step_1")
    return sum(os.path.getsize(os.path.join(step, entry)) for entry in os.listdir(step))


def main():
    args = mics_test.parse_args()
    if os.geteuid() != 0:
        print("SKIP: mounting a tmpfs needs root")
        sys.exit(77)
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()
    one = checkpoint_bytes(runner, "probe")
    mount = os.path.join(runner.dir, "small")
    os.makedirs(mount)
    # Room for one checkpoint and a half: the second cannot be written while the first is kept.
    size_kb = (one * 3 // 2) // 1024 + 64
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % size_kb, "mics-faults", mount]).returncode
    if rc != 0:
        print("SKIP: cannot mount a tmpfs here (rc %d)" % rc)
        sys.exit(77)
    try:
        # 1. No space for the second checkpoint.
        argv = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=full", "--train.steps=6",
                "--train.val_every=0", "--checkpoint.every_steps=3", "--checkpoint.keep=5",
                "--checkpoint.dir=" + mount] + LAYOUT
        start = time.monotonic()
        proc = runner.run_mpi(4, argv, timeout=120, check=False)
        seconds = time.monotonic() - start
        log = proc.stdout + proc.stderr
        checks.check(proc.returncode == EXIT_CHECKPOINT, "full disk: exit %d, expected 74\n%s" % (proc.returncode, log[-2000:]))
        checks.check(seconds < 60, "full disk: stopped in %.1f s" % seconds)
        checks.check("step 6" in log and ("No space" in log or "space" in log or "write" in log),
                     "full disk: the message names the checkpoint and the reason:\n" + log[-1500:])
        rdir = os.path.join(mount, "full")
        with open(os.path.join(rdir, "latest")) as f:
            checks.check(f.read().strip() == "step_3", "full disk: latest still names step_3")
        checks.check(not os.path.exists(os.path.join(rdir, "step_6")), "full disk: step_6 was not committed")
        verify = runner.run_serial(["ckpt", "verify", os.path.join(rdir, "step_3")], check=False)
        checks.check(verify.returncode == 0, "full disk: step_3 verifies: " + verify.stdout + verify.stderr)

        # 2. A signal whose checkpoint cannot be written: 74, not the requeue status. No periodic checkpoints
        # (so no free-space check at start); the disk is filled to leave room for half a checkpoint.
        for entry in os.listdir(mount):
            subprocess.run(["rm", "-rf", os.path.join(mount, entry)])
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        with open(os.path.join(mount, "filler"), "wb") as f:
            f.write(b"\0" * max(0, free - one // 2))
        log_path = os.path.join(runner.dir, "signal.log")
        argv = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=sig", "--train.steps=100000",
                "--train.val_every=0", "--checkpoint.every_steps=0", "--checkpoint.at_end=false",
                "--checkpoint.dir=" + mount] + LAYOUT
        proc = ckpt_test.start_mpi(runner, 4, argv, log_path)
        metrics = os.path.join(runner.dir, "runs", "sig", "metrics.jsonl")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None and not (
                    os.path.exists(metrics) and os.path.getsize(metrics) > 0):
                time.sleep(0.1)
            checks.check(proc.poll() is None, "signal without room: the run is training when signalled")
            if proc.poll() is None:
                os.kill(ckpt_test.rank_pid(proc.pid, 0), signal.SIGUSR1)
            proc.wait(timeout=90)
        finally:
            ckpt_test.stop_group(proc)
        with open(log_path) as f:
            log = f.read()
        checks.check(proc.returncode == EXIT_CHECKPOINT,
                     "signal without room: exit %s, expected 74 (not 75)\n%s" % (proc.returncode, log[-1500:]))
        checks.check("SIGUSR1 received" in log and "NOT written: no space left" in log,
                     "signal without room: the log says which checkpoint failed:\n" + log[-1500:])

        # 4. The directory turns read-only while the job runs: the next checkpoint fails with 74 and the
        # reason; the one before stays `latest` and verifies.
        for entry in os.listdir(mount):
            subprocess.run(["rm", "-rf", os.path.join(mount, entry)])
        log_path = os.path.join(runner.dir, "readonly.log")
        argv = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=ro", "--train.steps=100000",
                "--train.val_every=0", "--checkpoint.every_steps=20", "--checkpoint.dir=" + mount] + LAYOUT
        proc = ckpt_test.start_mpi(runner, 4, argv, log_path)
        try:
            ckpt_test.wait_for(lambda: os.path.exists(os.path.join(mount, "ro", "step_20")), 60, "step_20")
            subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
            start = time.monotonic()
            proc.wait(timeout=90)
            seconds = time.monotonic() - start
        finally:
            ckpt_test.stop_group(proc)
        with open(log_path) as f:
            log = f.read()
        checks.check(proc.returncode == EXIT_CHECKPOINT, "read-only: exit %s, expected 74\n%s" % (proc.returncode, log[-1500:]))
        checks.check(seconds < 60, "read-only: stopped %.1f s after the remount" % seconds)
        checks.check("Read-only file system" in log and "NOT written" in log,
                     "read-only: the message gives the reason:\n" + log[-1500:])
        with open(os.path.join(mount, "ro", "latest")) as f:
            newest = f.read().strip()
        checks.check(newest.startswith("step_"), "read-only: latest names a committed checkpoint: " + newest)
        verify = runner.run_serial(["ckpt", "verify", os.path.join(mount, "ro", newest)], check=False)
        checks.check(verify.returncode == 0, "read-only: %s verifies: %s" % (newest, verify.stdout + verify.stderr))

        # 5. Read-only from the start: refused before training (2), naming the key.
        proc = runner.run_mpi(4, ["train", "--deck", runner.deck("tiny.ini"), "--run.name=ro2", "--train.steps=2",
                                  "--checkpoint.every_steps=1", "--checkpoint.dir=" + mount] + LAYOUT,
                              timeout=60, check=False)
        log = proc.stdout + proc.stderr
        checks.check(proc.returncode == 2, "read-only at start: exit %d, expected 2\n%s" % (proc.returncode, log[-1500:]))
        checks.check("checkpoint.dir" in log, "read-only at start: the message names checkpoint.dir:\n" + log[-1000:])
    finally:
        subprocess.run(["umount", mount])

    # 3. checkpoint.dir is a file: refused before training, on every rank, naming the key.
    with open(os.path.join(runner.dir, "not_a_dir"), "w") as f:
        f.write("x")
    start = time.monotonic()
    proc = runner.run_mpi(4, ["train", "--deck", runner.deck("tiny.ini"), "--run.name=file", "--train.steps=2",
                              "--checkpoint.every_steps=1", "--checkpoint.dir=not_a_dir"] + LAYOUT,
                          timeout=60, check=False)
    log = proc.stdout + proc.stderr
    checks.check(proc.returncode == 2, "checkpoint.dir is a file: exit %d, expected 2" % proc.returncode)
    checks.check("checkpoint.dir = not_a_dir" in log, "the message names checkpoint.dir:\n" + log[-1000:])
    checks.check(time.monotonic() - start < 30, "refused within seconds")
    checks.finish()


if __name__ == "__main__":
    main()
