"""Shared pieces of the fault-injection tests: every case runs mpirun in a session of its own and asserts
the exit status, a bound on wall time, the message, and that no process of that session is left; the
checkpoint helpers assert that the newest committed checkpoint verifies and that a resume from it repeats
a reference run's losses exactly (same layout: bit-identical)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

# 4 ranks, 2 per emulated node, mics with p = 2, a small tiny model: each step takes milliseconds.
LAYOUT = ["--topology.ranks_per_node=2", "--parallel.partition_size=2", "--train.micro_batch=2",
          "--model.seq_len=32"]


def session_processes(session):
    """Pids of the live (not zombie) processes whose session id is `session`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(entry))
    return pids


class Job:
    def __init__(self, proc, log_path, started):
        self.proc, self.log_path, self.started = proc, log_path, started

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


class Faults:
    def __init__(self, args, tokens=20000):
        self.runner = mics_test.Runner(args, tokens=tokens)
        self.checks = mics_test.Checks()
        self.dir = self.runner.dir

    def train_argv(self, name, *extra):
        return ["train", "--deck", self.runner.deck("tiny.ini"), "--run.name=" + name, "--train.val_every=0",
                "--checkpoint.dir=ckpt", "--checkpoint.keep=10"] + LAYOUT + list(extra)

    def start(self, case, argv, ranks=4, env=None):
        args = self.runner.args
        cmd = [args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", str(ranks),
               args.mics] + argv
        log_path = os.path.join(self.dir, case + ".log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                    start_new_session=True)
        return Job(proc, log_path, time.monotonic())

    def finish(self, case, job, expect_rc, max_seconds, needles=()):
        """Waits for the job (killing its session past a hard bound), then checks it; returns the log."""
        try:
            job.proc.wait(timeout=max_seconds + 30)
        except subprocess.TimeoutExpired:
            os.killpg(job.proc.pid, signal.SIGKILL)
            job.proc.wait(timeout=30)
        seconds = time.monotonic() - job.started
        log = job.log()
        self.checks.check(job.proc.returncode == expect_rc,
                          "%s: exit %s, expected %d\n%s" % (case, job.proc.returncode, expect_rc, log[-2500:]))
        self.checks.check(seconds <= max_seconds, "%s: took %.1f s, bound %d s" % (case, seconds, max_seconds))
        for needle in needles:
            self.checks.check(needle in log, "%s: the output says %r:\n%s" % (case, needle, log[-2500:]))
        # Nothing of the job's session may outlive it (mpirun, ranks, helpers).
        deadline = time.monotonic() + 5
        left = session_processes(job.proc.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = session_processes(job.proc.pid)
        self.checks.check(not left, "%s: processes left behind: %s" % (case, left))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        print("case %-28s exit %3s  %5.1f s" % (case, job.proc.returncode, seconds), flush=True)
        return log

    def run(self, case, argv, expect_rc, max_seconds, needles=(), ranks=4, env=None):
        return self.finish(case, self.start(case, argv, ranks, env), expect_rc, max_seconds, needles)

    def serial(self, case, argv, expect_rc, needles=(), max_seconds=30):
        """A single-process mics command (ckpt, export): exit status, time and message."""
        proc = self.runner.run_serial(argv, timeout=max_seconds + 30, check=False)
        out = proc.stdout + proc.stderr
        self.checks.check(proc.returncode == expect_rc,
                          "%s: mics %s exited %d, expected %d\n%s" % (case, " ".join(argv[:2]), proc.returncode,
                                                                     expect_rc, out[-2000:]))
        self.checks.check(proc.seconds <= max_seconds, "%s: took %.1f s" % (case, proc.seconds))
        for needle in needles:
            self.checks.check(needle in out, "%s: mics %s says %r:\n%s" % (case, argv[0], needle, out[-2000:]))
        return out

    def run_dir(self, name):
        return os.path.join(self.dir, "ckpt", name)

    def latest(self, name):
        with open(os.path.join(self.run_dir(name), "latest")) as f:
            return os.path.join(self.run_dir(name), f.read().strip())

    def newest_verifies(self, case, name):
        newest = self.latest(name)
        self.serial(case + " (verify newest)", ["ckpt", "verify", newest], 0)
        return newest

    def losses(self, name):
        return self.runner.losses(name)

    def same_losses(self, case, name, reference, from_step):
        """The run `name`, resumed at `from_step`, logged exactly the reference's losses after it."""
        got = [m["loss"] for m in self.runner.metrics(name) if "loss" in m and m["step"] > from_step]
        want = reference[from_step:]
        self.checks.check(got == want, "%s: losses after step %d equal the reference's:\n%s\n%s" %
                          (case, from_step, got, want))
