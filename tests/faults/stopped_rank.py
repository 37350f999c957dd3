"""A rank that stops making progress (SIGSTOP) while training must not leave its peers spinning forever:
with a short run.timeout the others give up on the collective they wait in, name the operation, the
group and its ranks, and the job ends with exit status 1 within the timeout plus a few seconds, with no
process left. The checkpoint the run started from still verifies.

The same while a checkpoint is being written (every dataset slowed to 150 ms, so the write lasts many
times the timeout): a legitimate slow write completes (written in the background while training goes
on; the ranks that wait for it at the end watch its files grow); a rank stopped in the middle of its
write stops the job with exit 1 within the timeout, `latest` still names the previous checkpoint, which
verifies and resumes to the reference losses."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
import ckpt_test  # noqa: E402
import mics_test  # noqa: E402
sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402

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
    during_checkpoint_write(args, checks)
    checks.finish()


def during_checkpoint_write(args, checks):
    faults = faultlib.Faults(args)
    faults.checks = checks
    timeout = ["--run.timeout=%g" % TIMEOUT_MINUTES]
    slow = {"MICS_CHECKPOINT_WRITE_DELAY_MS": "150"}
    faults.run("reference", faults.train_argv("ref", "--train.steps=8", "--checkpoint.every_steps=0",
                                              "--checkpoint.at_end=false"), 0, 60)
    reference = faults.losses("ref")

    # A slow write that makes progress: never timed out.
    log = faults.run("slow write", faults.train_argv("slow", "--train.steps=3", "--checkpoint.every_steps=3",
                                                    *timeout), 0, 120, ["checkpoint written: ckpt/slow/step_3"],
                     env=slow)
    # A writer stopped in the middle of the next one.
    job = faults.start("stopped writer", faults.train_argv("slow", "--train.steps=8", "--checkpoint.every_steps=6",
                                                          *timeout), env=slow)
    partial = os.path.join(faults.run_dir("slow"), "step_6.partial", "shard_00001.h5")
    try:
        ckpt_test.wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0, 60, partial)
        time.sleep(0.5)
        os.kill(ckpt_test.rank_pid(job.proc.pid, 1), signal.SIGSTOP)  # rank 1 writes with rank 0 (p = 2)
    except BaseException:
        ckpt_test.stop_group(job.proc)
        raise
    log = faults.finish("stopped writer", job, 1, int(60 * TIMEOUT_MINUTES) + 30,
                        ["made no progress", "run.timeout"])
    checks.check(faults.latest("slow").endswith("step_3"), "stopped writer: latest still names step_3")
    faults.newest_verifies("stopped writer", "slow")
    faults.run("resume", faults.train_argv("slow", "--train.steps=8", "--checkpoint.every_steps=0"), 0, 60,
               ["resumed from ckpt/slow/step_3 "])
    faults.same_losses("stopped writer", "slow", reference, 3)


if __name__ == "__main__":
    main()
