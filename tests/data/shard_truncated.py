"""A token shard truncated while a job trains on it: the job must end with a message, not die of SIGBUS.

Two ranks train on one shard; once a few steps are logged the shard is cut to its header. The next batch
read comes up short, and the job must end within a bound with a non-zero status and a message naming the
file and its size at open and now, with no rank left behind. Only the processes this test started
(mpirun's session) are ever killed."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
import ckpt_test  # noqa: E402
import mics_test  # noqa: E402

BOUND_SECONDS = 30  # from the truncation to mpirun's exit


def alive(pid):
    """True while pid runs and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=200000)
    checks = mics_test.Checks()
    shard = os.path.join(runner.dir, "data", "synth", "train_000000.bin")
    size_at_open = os.path.getsize(shard)
    log_path = os.path.join(runner.dir, "truncated.log")
    argv = ["train", "--deck", runner.deck("tiny.ini"), "--run.name=cut", "--train.steps=1000000",
            "--train.val_every=0", "--train.log_every=1", "--checkpoint.dir=ckpt", "--checkpoint.every_steps=0",
            "--checkpoint.at_end=false"]
    metrics = os.path.join(runner.dir, "runs", "cut", "metrics.jsonl")

    def steps_logged():
        try:
            with open(metrics) as f:
                return sum(1 for line in f if line.strip())
        except OSError:
            return 0

    proc = ckpt_test.start_mpi(runner, 2, argv, log_path)
    pids = []
    seconds = None
    try:
        ckpt_test.wait_for(lambda: steps_logged() >= 3 or proc.poll() is not None, 120, "3 logged steps")
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                raise SystemExit("FAILED: the job ended (%s) before the shard was cut:\n%s" % (proc.returncode,
                                                                                            f.read()[-3000:]))
        pids = [ckpt_test.rank_pid(proc.pid, r) for r in range(2)]
        os.truncate(shard, 1024)  # the header alone: every batch read now falls past the end
        cut_at = time.monotonic()
        try:
            proc.wait(timeout=BOUND_SECONDS + 30)
        except Exception:  # noqa: BLE001 -- reported below as a failure, then the group is killed
            pass
        seconds = time.monotonic() - cut_at
    finally:
        ckpt_test.stop_group(proc)
    with open(log_path, errors="replace") as f:
        log = f.read()
    # InputError on the rank that read it: MPI_Abort with 2, which mpirun returns.
    checks.check(proc.returncode == 2, "exit status 2, got %s\n%s" % (proc.returncode, log[-3000:]))
    checks.check(seconds is not None and seconds < BOUND_SECONDS,
                 "the job ended %s s after the cut (bound %d s)" % (seconds, BOUND_SECONDS))
    expected = "token shard %s shrank from %d to 1024 bytes while the job ran" % (
        os.path.join("data", "synth", "train_000000.bin"), size_at_open)
    checks.check(expected in log, "the message names the file and both sizes (%r):\n%s" % (expected, log[-3000:]))
    checks.check("at offset" in log, "the message names the offset")
    checks.check("SIGBUS" not in log and "Bus error" not in log, "no rank died of SIGBUS:\n" + log[-3000:])
    time.sleep(1)
    left = [p for p in pids if alive(p)]
    checks.check(pids and not left, "no rank is left behind: %s of %s" % (left, pids))
    checks.finish()


if __name__ == "__main__":
    main()
