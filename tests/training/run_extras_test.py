"""Around the training run: a checkpoint after the last step (once, also when the step was due anyway);
the run lock in <checkpoint.dir>/<run.name> (refused while a live run holds it, taken over when stale,
taken by the same Slurm job, released at the end); the metrics' timestamp, MFU, memory and the slowest
and fastest rank every train.skew_every steps."""
import datetime
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

COMMON = ["--train.val_every=0", "--train.log_every=1", "--checkpoint.dir=ckpt", "--checkpoint.keep=10",
          "--model.seq_len=32", "--train.micro_batch=2"]


def train(runner, name, *extra):
    return ["train", "--deck", runner.deck("tiny.ini"), "--run.name=" + name] + COMMON + list(extra)


def steps_in(runner, name):
    d = os.path.join(runner.dir, "ckpt", name)
    return sorted(int(e[5:]) for e in os.listdir(d) if e.startswith("step_") and not e.endswith(".partial"))


def write_lock(runner, name, job, host, pid, age_s=0):
    d = os.path.join(runner.dir, "ckpt", name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "lock")
    with open(path, "w") as f:
        f.write("job %s\nhost %s\npid %d\n" % (job, host, pid))
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=60000)
    checks = mics_test.Checks()

    # 7 steps, every 5: step_5 and the final step_7; 2 ranks, the spread every 3 steps (and the last)
    proc = runner.run_mpi(2, train(runner, "final", "--train.steps=7", "--checkpoint.every_steps=5",
                                   "--train.skew_every=3"))
    out = proc.stdout + proc.stderr
    checks.check(steps_in(runner, "final") == [5, 7], "checkpoints of a 7-step run: %s" % steps_in(runner, "final"))
    with open(os.path.join(runner.dir, "ckpt", "final", "latest")) as f:
        checks.check(f.read().strip().endswith("step_7"), "latest names step_7")
    checks.check("writing the final checkpoint at step 7" in out, "the log announces the final checkpoint")
    checks.check("this run owns checkpoint directory ckpt/final" in out, "the log names the checkpoint directory")
    checks.check(not os.path.exists(os.path.join(runner.dir, "ckpt", "final", "lock")), "the lock is released")
    checks.check("MFU" in out and "measured fp32 sgemm" in out, "the log names the MFU's peak")
    records = [m for m in runner.metrics("final") if "loss" in m]
    checks.check(len(records) == 7, "%d step records" % len(records))
    for r in records:
        stamp = datetime.datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        checks.check(abs((datetime.datetime.utcnow() - stamp).total_seconds()) < 600, "timestamp %s" % r["timestamp"])
        # mfu = flops_per_s / (ranks x one peak, measured once at start): one ratio for every step (the
        # value itself depends on the load of the machine while the peak was measured)
        checks.check(r["mfu"] > 0 and abs(r["mfu"] / r["flops_per_s"] - records[0]["mfu"] / records[0]["flops_per_s"])
                     <= 1e-6 * records[0]["mfu"] / records[0]["flops_per_s"], "step %d mfu %s" % (r["step"], r["mfu"]))
        checks.check(r["memory"]["rss"] > 1e6 and r["memory"]["device"] == 0, "memory %s" % r["memory"])
        spread = r.get("ranks")
        checks.check((spread is not None) == (r["step"] in (3, 6, 7)), "spread at step %d: %s" % (r["step"], spread))
        if spread:
            checks.check(spread["slowest_s"] >= spread["fastest_s"] > 0, "slowest >= fastest: %s" % spread)
            checks.check({spread["slowest_rank"], spread["fastest_rank"]} <= {0, 1}, "ranks %s" % spread)
            checks.check(spread["max_rss"] >= r["memory"]["rss"], "largest RSS %s" % spread)
    checks.check("step time slowest" in out, "the log shows the rank spread")

    # 10 steps, every 5: the last step was due anyway, written once
    proc = runner.run_serial(train(runner, "due", "--train.steps=10", "--checkpoint.every_steps=5"))
    checks.check(steps_in(runner, "due") == [5, 10], "checkpoints of a 10-step run: %s" % steps_in(runner, "due"))
    checks.check("writing the final checkpoint" not in proc.stdout + proc.stderr, "no second final write")
    # checkpoint.at_end = false keeps the old behaviour
    runner.run_serial(train(runner, "noend", "--train.steps=3", "--checkpoint.at_end=false"))
    checks.check(steps_in(runner, "noend") == [], "no checkpoint with checkpoint.at_end=false")

    host = socket.gethostname()
    # a live process on this host holds the lock: refused, naming it
    write_lock(runner, "held", "none", host, os.getpid())
    proc = runner.run_mpi(2, train(runner, "held", "--train.steps=2"), check=False)
    err = proc.stdout + proc.stderr
    checks.check(proc.returncode == 2, "a held lock exits 2 (got %d)" % proc.returncode)
    checks.check("in use by another run" in err and "pid %d" % os.getpid() in err and "host " + host in err,
                 "the refusal names the holder: %s" % err[-600:])
    checks.check(not os.path.isdir(os.path.join(runner.dir, "ckpt", "held", "step_2")), "nothing written")

    # the holder's process is gone: taken over with a warning
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_lock(runner, "stale", "none", host, gone.pid)
    proc = runner.run_serial(train(runner, "stale", "--train.steps=2"))
    checks.check("took over the stale lock" in proc.stdout + proc.stderr, "stale lock taken over with a warning")
    checks.check(steps_in(runner, "stale") == [2], "the run that took over trained")

    # another host, no Slurm job: live while its heartbeat is fresh, stale after checkpoint.lock_stale_minutes
    write_lock(runner, "remote", "none", "other-host.invalid", 1)
    proc = runner.run_serial(train(runner, "remote", "--train.steps=2"), check=False)
    checks.check(proc.returncode == 2 and "heartbeat" in proc.stderr + proc.stdout,
                 "a fresh lock of another host is refused: %d %s" % (proc.returncode, proc.stderr[-300:]))
    write_lock(runner, "remote", "none", "other-host.invalid", 1, age_s=7200)
    proc = runner.run_serial(train(runner, "remote", "--train.steps=2"), check=False)
    checks.check(proc.returncode == 0 and "took over the stale lock" in proc.stdout + proc.stderr,
                 "a lock without heartbeat for 2 h is stale: %d" % proc.returncode)

    # the same Slurm job (requeued: the same SLURM_JOB_ID) takes its own lock
    write_lock(runner, "requeued", "4242", "other-host.invalid", 1)
    env = dict(os.environ, SLURM_JOB_ID="4242")
    env.pop("SLURM_NTASKS", None)
    proc = subprocess.run([args.mics] + train(runner, "requeued", "--train.steps=2"), cwd=runner.dir,
                          capture_output=True, text=True, timeout=120, env=env)
    checks.check(proc.returncode == 0 and "the same Slurm job" in proc.stdout + proc.stderr,
                 "a requeued job takes its own lock: %d %s" % (proc.returncode, proc.stderr[-300:]))
    checks.finish()


if __name__ == "__main__":
    main()
