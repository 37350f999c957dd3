"""bench/plot_runs.py draws two runs (1 and 2 ranks) into one PNG. Needs matplotlib: the test looks for
it in this Python, then in Debian's (/usr/bin/python3, where `make run` installs python3-matplotlib),
and is SKIPPED (exit 77) when neither has it."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402


def python_with_matplotlib():
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run([python, "-c", "import matplotlib"],
                                                     capture_output=True).returncode == 0:
            return python
    return None


def main():
    args = mics_test.parse_args()
    python = python_with_matplotlib()
    if python is None:
        print("SKIPPED: no Python with matplotlib (apt-get install python3-matplotlib)")
        sys.exit(77)
    runner = mics_test.Runner(args, tokens=30000)
    checks = mics_test.Checks()
    common = ["--deck", runner.deck("tiny.ini"), "--train.steps=4", "--model.seq_len=32", "--train.val_every=2",
              "--checkpoint.at_end=false"]
    runner.run_serial(["train", "--run.name=one"] + common)
    runner.run_mpi(2, ["train", "--run.name=two"] + common)
    out = os.path.join(runner.dir, "plots", "runs.png")
    script = os.path.join(args.source_dir, "bench", "plot_runs.py")
    proc = subprocess.run([python, script, os.path.join(runner.dir, "runs", "one"),
                           os.path.join(runner.dir, "runs", "two"), "-o", out], capture_output=True, text=True,
                          timeout=120)
    checks.check(proc.returncode == 0, "plot_runs.py: %d %s" % (proc.returncode, proc.stderr[-500:]))
    checks.check(os.path.exists(out) and os.path.getsize(out) > 10000, "a PNG was written")
    if os.path.exists(out):
        with open(out, "rb") as f:
            checks.check(f.read(8) == b"\x89PNG\r\n\x1a\n", "the file is a PNG")
    checks.finish()


if __name__ == "__main__":
    main()
