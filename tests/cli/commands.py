"""The mics command's everyday paths: --version, --help of every subcommand, `mics config` printing a
deck that runs again, and the comm benchmark at 4 ranks as 2 emulated nodes with no wrong results."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()

    out = runner.run_serial(["--version"]).stdout
    checks.check(re.match(r"mics \d+\.\d+\.\d+", out) is not None, "--version printed %r" % out)
    for sub in (["train"], ["config"], ["bench", "comm"], ["data"], ["sample"]):
        proc = runner.run_serial(sub + ["--help"], check=False)
        checks.check(proc.returncode == 0 and "usage" in proc.stdout.lower(),
                     "%s --help: rc %d, %r" % (" ".join(sub), proc.returncode, proc.stdout[:200]))
    proc = runner.run_serial(["train", "--deck"], check=False)
    checks.check(proc.returncode == 2 and "--deck" in proc.stderr, "--deck without a file: rc %d, %r" %
                 (proc.returncode, proc.stderr))
    proc = runner.run_serial(["frobnicate"], check=False)
    checks.check(proc.returncode == 2 and "unknown command 'frobnicate'" in proc.stderr, "unknown command")

    # mics config prints every key, defaults included, as a deck that parses to the same configuration.
    first = runner.run_serial(["config", "--deck", runner.deck("demo.ini"), "--train.steps=7"]).stdout
    with open(os.path.join(runner.dir, "effective.ini"), "w") as f:
        f.write(first)
    second = runner.run_serial(["config", "--deck", "effective.ini"]).stdout
    checks.check(first == second, "mics config output does not run again to the same deck")
    checks.check("steps = 7" in first and "[checkpoint]" in first and "ranks_per_node = 2" in first,
                 "mics config lacks keys:\n" + first[:500])
    # The same under mpirun: only rank 0 prints.
    proc = runner.run_mpi(4, ["config", "--deck", runner.deck("demo.ini"), "--train.steps=7"])
    checks.check(proc.stdout == first, "mics config under mpirun printed something else")

    # The comm benchmark, 4 ranks as 2 nodes, partition groups spanning both: flat and hierarchical.
    proc = runner.run_mpi(4, ["bench", "comm", "-b", "1K", "-e", "64K", "-f", "4", "-n", "5", "-w", "2",
                              "--topology.ranks_per_node=2", "--parallel.partition_size=4"])
    text = proc.stdout
    checks.check("busbw" in text and "#wrong" in text and "Avg bus bandwidth" in text, "bench table:\n" + text[:800])
    checks.check("hierarchical" in text.lower(), "bench lacks the hierarchical all-gather:\n" + text[:800])
    wrong_columns = [line.split()[-1] for line in text.splitlines()
                     if re.match(r"\s*\d+\s+\d+\s+(float|bfloat16)", line)]
    checks.check(len(wrong_columns) > 0 and all(w == "0" for w in wrong_columns),
                 "bench rows with wrong results: %s" % wrong_columns)
    checks.finish()


if __name__ == "__main__":
    main()
