"""SIGUSR1 sent to mpirun itself, not to a rank: Open MPI's mpirun forwards it to every rank, the ranks
agree at the next step boundary, commit a checkpoint of that step and exit 75, and mpirun returns 75
to the shell. This is how README.md#exit-status says to stop a job started with plain mpirun."""
import os
import signal
import time

import ckpt_test
from ckpt_test import mics_test

EXIT_REQUEUE = 75
BOUND_SECONDS = 60  # from the signal to mpirun's exit


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=50000)
    checks = mics_test.Checks()
    argv = ckpt_test.train_argv(runner, "usr1", "--train.steps=100000", "--checkpoint.every_steps=0",
                                "--checkpoint.at_end=false")
    metrics = os.path.join(runner.dir, "runs", "usr1", "metrics.jsonl")

    def lines():
        try:
            with open(metrics) as f:
                return sum(1 for line in f if "\"loss\"" in line)  # steps (checkpoint records too are lines)
        except OSError:
            return 0

    log_path = os.path.join(runner.dir, "usr1.log")
    proc = ckpt_test.start_mpi(runner, 2, argv, log_path)
    seconds = None
    try:
        ckpt_test.wait_for(lambda: lines() >= 3 or proc.poll() is not None, 120, "3 metric lines")
        os.kill(proc.pid, signal.SIGUSR1)  # mpirun's own pid
        sent = time.monotonic()
        try:
            proc.wait(timeout=BOUND_SECONDS)
            seconds = time.monotonic() - sent
        except Exception:  # noqa: BLE001 -- a timeout, reported below; the group is killed in finally
            pass
    finally:
        ckpt_test.stop_group(proc)
    with open(log_path, errors="replace") as f:
        log = f.read()
    checks.check(seconds is not None, "mpirun exited within %d s of SIGUSR1" % BOUND_SECONDS)
    checks.check(proc.returncode == EXIT_REQUEUE, "exit status %s, expected 75\n%s" % (proc.returncode, log[-2000:]))
    checks.check("SIGUSR1 received" in log, "the ranks got the signal:\n" + log[-2000:])
    done = lines()
    latest = os.path.join(ckpt_test.run_dir(runner, "usr1"), "latest")
    name = open(latest).read().strip() if os.path.exists(latest) else None
    checks.check(name == "step_%d" % done, "latest names the last step done (step_%d): %s" % (done, name))
    if name:
        verify = runner.run_serial(["ckpt", "verify", os.path.join(ckpt_test.run_dir(runner, "usr1"), name)],
                                   check=False)
        checks.check(verify.returncode == 0, "the checkpoint verifies: " + verify.stdout + verify.stderr)
    checks.finish()


if __name__ == "__main__":
    main()
