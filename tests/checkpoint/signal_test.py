"""Signals and timed checkpoints under mpirun.

SIGUSR1 sent to one rank's process (rank 1 of 4): every rank agrees at the next step boundary, a
checkpoint of that step is committed, and the job exits with 75 (requeue). Auto resume then continues;
SIGTERM to another rank (rank 2) does the same; the final resume completes the run. The losses of the
three pieces together are exactly those of an uninterrupted run. checkpoint.every_minutes writes
checkpoints on rank 0's clock."""
import os
import signal

import ckpt_test
from ckpt_test import mics_test

STEPS = 40
EXIT_REQUEUE = 75


def interrupt(runner, checks, name, argv, rank, signal_number, after_lines):
    """Runs until the metrics have `after_lines` lines, signals one rank, expects exit 75."""
    metrics = os.path.join(runner.dir, "runs", name, "metrics.jsonl")

    def lines():
        try:
            with open(metrics) as f:
                return sum(1 for line in f if "\"loss\"" in line)  # steps (checkpoint records too are lines)
        except OSError:
            return 0

    log_path = os.path.join(runner.dir, "%s-%d.log" % (name, signal_number))
    proc = ckpt_test.start_mpi(runner, 4, argv, log_path)
    try:
        ckpt_test.wait_for(lambda: lines() >= after_lines, 60, "%d metric lines" % after_lines)
        os.kill(ckpt_test.rank_pid(proc.pid, rank), signal_number)
        proc.wait(timeout=60)
    finally:
        ckpt_test.stop_group(proc)
    with open(log_path) as f:
        log = f.read()
    done = lines()
    sig_name = signal.Signals(signal_number).name
    checks.check(proc.returncode == EXIT_REQUEUE, "%s: exit status %d, expected 75\n%s" % (sig_name, proc.returncode,
                                                                                      log[-2000:]))
    checks.check(done < STEPS, "%s arrived before the end (%d steps done)" % (sig_name, done))
    checks.check("%s received" % sig_name in log and "requeue" in log, "%s: the log says why it stopped" % sig_name)
    with open(os.path.join(ckpt_test.run_dir(runner, name), "latest")) as f:
        checks.check(f.read().strip() == "step_%d" % done, "%s: checkpoint of the last step done (%d)" % (sig_name, done))
    return done


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()
    layout = ckpt_test.REFERENCE_LAYOUT
    steps = "--train.steps=%d" % STEPS

    runner.run_mpi(4, ckpt_test.train_argv(runner, "ref", steps, *layout))
    reference = runner.losses("ref")

    argv = ckpt_test.train_argv(runner, "sig", steps, *layout)
    first = interrupt(runner, checks, "sig", argv, 1, signal.SIGUSR1, 3)
    second = interrupt(runner, checks, "sig", argv, 2, signal.SIGTERM, first + 3)
    checks.check(second > first, "the second piece made progress (%d -> %d)" % (first, second))
    final = runner.run_mpi(4, argv)
    checks.check("resumed from ckpt/sig/step_%d" % second in final.stdout + final.stderr, "resumed after SIGTERM")
    losses = runner.losses("sig")
    checks.check(losses == reference, "interrupted twice and resumed: losses equal the uninterrupted run's")

    timed = runner.run_mpi(4, ckpt_test.train_argv(runner, "timed", "--train.steps=10", "--checkpoint.every_minutes=0.0001",
                                                   *layout))
    entries = os.listdir(ckpt_test.run_dir(runner, "timed"))
    checks.check(any(e.startswith("step_") for e in entries) and "checkpoint written" in timed.stdout + timed.stderr,
                 "checkpoint.every_minutes wrote checkpoints: %s" % entries)
    checks.finish()


if __name__ == "__main__":
    main()
