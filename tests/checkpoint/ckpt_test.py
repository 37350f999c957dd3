"""Shared pieces of the checkpoint test drivers: the common training options, launching mpirun in the
background, finding one rank's process, and reading llm.c files."""
import os
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402,F401

STEPS = 20
# Reference layout: 4 ranks, 2 per emulated node, mics with p = 2; global batch 16 sequences.
COMMON = ["--train.steps=%d" % STEPS, "--train.val_every=0", "--train.log_every=1", "--checkpoint.dir=ckpt",
          "--checkpoint.keep=10"]
REFERENCE_LAYOUT = ["--topology.ranks_per_node=2", "--parallel.partition_size=2", "--train.micro_batch=4"]


def train_argv(runner, name, *extra):
    return ["train", "--deck", runner.deck("tiny.ini")] + COMMON + ["--run.name=" + name] + list(extra)


def run_dir(runner, name):
    return os.path.join(runner.dir, "ckpt", name)


def start_mpi(runner, ranks, argv, log_path, env=None):
    """mpirun in the background, output to log_path."""
    cmd = [runner.args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
           "-np", str(ranks), runner.args.mics] + argv
    log = open(log_path, "w")
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.Popen(cmd, cwd=runner.dir, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                            start_new_session=True)


def rank_pid(mpirun_pid, rank, timeout=30):
    """The pid of world rank `rank` among mpirun's descendants (Open MPI sets OMPI_COMM_WORLD_RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % entry, "rb") as f:
                    env = f.read().split(b"\0")
                with open("/proc/%s/stat" % entry) as f:
                    session = int(f.read().rsplit(")", 1)[1].split()[3])
            except OSError:
                continue
            if session == mpirun_pid and b"OMPI_COMM_WORLD_RANK=%d" % rank in env:
                return int(entry)
        time.sleep(0.05)
    raise SystemExit("rank %d of mpirun %d not found" % (rank, mpirun_pid))


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise SystemExit("timed out waiting for " + what)


def stop_group(proc):
    """Ends a background mpirun and everything it started (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def read_llmc(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    return header, data[1024:]
