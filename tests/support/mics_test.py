"""Shared pieces of the Python test drivers: arguments from ctest, running mics (under mpirun) with a
timeout, a synthetic corpus, and reading a run's metrics."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def parse_args(extra=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--mics", required=True)
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--mpiexec", default="mpirun")
    if extra:
        extra(parser)
    return parser.parse_args()


class Runner:
    """Runs mics in a scratch directory that holds a synthetic corpus under data/synth."""

    def __init__(self, args, tokens=100000, seed=7):
        self.args = args
        self.scratch = tempfile.TemporaryDirectory(prefix="mics-test-")
        self.dir = self.scratch.name
        out = self.run_serial(["data", "synth", "data/synth", "--tokens", str(tokens), "--seed", str(seed)])
        self.entropy_floor = None
        for line in out.stdout.splitlines():
            if line.startswith("entropy floor:"):
                self.entropy_floor = float(line.split()[2])

    def deck(self, name):
        return os.path.join(self.args.source_dir, "inputs", name)

    def run_serial(self, argv, timeout=120, check=True):
        return self._run([self.args.mics] + argv, timeout, check)

    def run_mpi(self, ranks, argv, timeout=180, check=True):
        cmd = [self.args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
               "-np", str(ranks), self.args.mics] + argv
        return self._run(cmd, timeout, check)

    def _run(self, cmd, timeout, check):
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        proc.seconds = time.monotonic() - start
        if check and proc.returncode != 0:
            sys.stderr.write("command failed (%d): %s\n%s\n%s\n" % (proc.returncode, " ".join(cmd),
                                                                   proc.stdout[-4000:], proc.stderr[-4000:]))
            raise SystemExit(1)
        return proc

    def metrics(self, run_name):
        path = os.path.join(self.dir, "runs", run_name, "metrics.jsonl")
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def losses(self, run_name):
        return [m["loss"] for m in self.metrics(run_name) if "loss" in m]


class Checks:
    """Collects failures so one run reports all of them; exit status 1 if any."""

    def __init__(self):
        self.failures = 0
        self.passed = 0

    def check(self, ok, message):
        if ok:
            self.passed += 1
        else:
            self.failures += 1
            print("FAILED: " + message, flush=True)
        return ok

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failures))
        sys.exit(1 if self.failures else 0)
