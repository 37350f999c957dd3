"""A rank that stops making progress (SIGSTOP) while training must not leave its peers spinning forever:
with a short run.timeout the others give up on the collective they wait in, name the operation, the
group and its ranks, and the job ends with exit status 1 within the timeout plus a few seconds, with no
process left. The checkpoint the run started from still verifies."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
import ckpt_test  # noqa: E402
import mics_test  # noqa: E402

TIMEOUT_MINUTES = 0.1  # 6 s


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()
    log_path = os.path.join(runner.dir, "stopped.log")
    common = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=stopped", "--train.val_every=0",
              "--checkpoint.dir=ckpt", "--run.timeout=%g" % TIMEOUT_MINUTES, "--topology.ranks_per_node=2",
              "--parallel.partition_size=2", "--train.micro_batch=2", "--model.seq_len=32"]
    # A checkpoint first (step 3), then a run that resumes from it and trains on without checkpoints.
    runner.run_mpi(4, common + ["--train.steps=3", "--checkpoint.every_steps=3"])
    proc = ckpt_test.start_mpi(runner, 4, common + ["--train.steps=100000", "--checkpoint.every_steps=0",
                                                    "--checkpoint.at_end=false"], log_path)
    pids = []
    try:
        deadline = time.monotonic() + 60
        metrics = os.path.join(runner.dir, "runs", "stopped", "metrics.jsonl")
        while time.monotonic() < deadline and proc.poll() is None and not (
                os.path.exists(metrics) and sum(1 for _ in open(metrics)) > 5):
            time.sleep(0.1)
        pids = [ckpt_test.rank_pid(proc.pid, r) for r in range(4)]
        os.kill(pids[2], signal.SIGSTOP)
        stopped_at = time.monotonic()
        proc.wait(timeout=60 * TIMEOUT_MINUTES + 40)
        seconds = time.monotonic() - stopped_at
    finally:
        ckpt_test.stop_group(proc)
    with open(log_path) as f:
        log = f.read()
    checks.check(proc.returncode == 1, "exit status %s, expected 1\n%s" % (proc.returncode, log[-2000:]))
    checks.check(seconds < 60 * TIMEOUT_MINUTES + 30, "stopped %.1f s after the rank was stopped" % seconds)
    checks.check("made no progress" in log and "world ranks" in log and "run.timeout" in log,
                 "the message names the operation, the group's ranks and the key:\n" + log[-2000:])
    time.sleep(1)
    checks.check(not any(alive(pid) for pid in pids), "no rank is left behind: %s" % [p for p in pids if alive(p)])
    with open(os.path.join(runner.dir, "ckpt", "stopped", "latest")) as f:
        newest = os.path.join(runner.dir, "ckpt", "stopped", f.read().strip())
    verify = runner.run_serial(["ckpt", "verify", newest], check=False)
    checks.check(verify.returncode == 0, "the newest committed checkpoint verifies: " + verify.stdout + verify.stderr)
    checks.finish()


if __name__ == "__main__":
    main()
