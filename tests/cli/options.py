"""Every subcommand's command line goes through one option table (src/cli/command_line.hpp): --help is
generated from it (options and positional arguments), an unknown option or a missing value exits 2
naming the option and printing the subcommand's usage, and the old spellings keep working."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()

    def fails(argv, *fragments):
        proc = runner.run_serial(argv, check=False)
        checks.check(proc.returncode == 2, "%s: rc %d, want 2: %r" % (" ".join(argv), proc.returncode, proc.stderr))
        for fragment in fragments + ("usage:",):
            checks.check(fragment in proc.stderr, "%s: stderr lacks %r:\n%s" % (" ".join(argv), fragment, proc.stderr))

    # --help from the table: each option once, positional arguments described.
    helps = {
        ("train",): ["--deck", "--section.key=value"],
        ("config",): ["--deck"],
        ("bench", "comm"): ["--minbytes", "-b", "--device", "--json", "BENCHMARK"],
        ("data",): ["prepare TEXT OUTDIR", "synth OUTDIR", "--val-fraction", "--vocab", "--force"],
        ("data", "synth"): ["OUTDIR", "--branching"],
        ("ckpt",): ["ACTION", "PATH", "verify"],
        ("export",): ["PATH", "OUT", "--format"],
        ("sample",): ["PATH", "--prompt-ids", "--temperature", "--device"],
        ("plan",): ["--nodes", "--hardware", "--calibration", "--sweep-nodes", "--deck"],
    }
    for sub, words in helps.items():
        proc = runner.run_serial(list(sub) + ["--help"], check=False)
        checks.check(proc.returncode == 0, "%s --help: rc %d" % (" ".join(sub), proc.returncode))
        for word in words:
            checks.check(word in proc.stdout, "%s --help lacks %r:\n%s" % (" ".join(sub), word, proc.stdout))

    # Unknown options and missing values: exit 2, the option named, the usage printed.
    fails(["export", "a", "b", "--format=llmc", "--frob"], "unknown option '--frob'")
    fails(["export", "a", "b", "--format"], "--format")
    fails(["export", "a", "b"], "--format")
    fails(["ckpt", "inspect"], "expected ACTION PATH")
    fails(["ckpt", "frobnicate", "x"], "unknown action 'frobnicate'")
    fails(["sample", "x", "--temperature"], "--temperature")
    fails(["sample", "x", "--bogus", "1"], "unknown option '--bogus'")
    fails(["data", "prepare", "in.txt", "out", "--shards", "3"], "unknown option '--shards'")
    fails(["data", "prepare", "in.txt"], "expected TEXT OUTDIR")
    fails(["data", "prepare", "in.txt", "out", "--val-fraction", "1.5"], "--val-fraction")
    fails(["data", "synth", "out", "--branching", "0"], "--branching")
    fails(["data", "shuffle"], "unknown command 'shuffle'")
    fails(["data"], "prepare or synth")
    fails(["plan", "--deck", "x.ini", "--nodes"], "--nodes")
    fails(["plan", "--deck", "x.ini", "--nodes", "2", "--recompute", "some"], "--recompute")
    fails(["plan", "--deck", "x.ini", "--frob"], "unknown option '--frob'")
    fails(["bench", "comm", "-n", "0"], "-n")
    fails(["bench", "comm", "-x", "1"], "unknown option '-x'")
    fails(["bench", "comm", "-b"], "-b")
    fails(["bench", "comm", "--device", "tpu"], "--device")
    fails(["bench", "frob"], "unknown benchmark 'frob'")
    fails(["train", "--deck", "x.ini", "stray"], "unexpected argument 'stray'")
    fails(["config", "--frob"], "unknown option '--frob'")

    # The old spellings still parse: --name=value, short options, deck overrides.
    proc = runner.run_serial(["config", "--deck=" + runner.deck("tiny.ini"), "--train.steps=9"])
    checks.check("steps = 9" in proc.stdout, "--deck=FILE with an override")
    proc = runner.run_serial(["data", "synth", "synth2", "--tokens=5000", "--vocab", "32", "--force"])
    checks.check("vocab: 32" in proc.stdout, "data synth with --tokens=N: %r" % proc.stdout)

    # --device cuda without a GPU (hidden here, so this runs on GPU machines too), or in a build without
    # CUDA: a clear error naming --device cuda, exit 2 on every rank.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    import subprocess
    proc = subprocess.run([args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", "2",
                           "-x", "CUDA_VISIBLE_DEVICES=", args.mics, "bench", "comm", "--device", "cuda",
                           "-e", "1K"], cwd=runner.dir, env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    checks.check(proc.returncode == 2, "bench comm --device cuda without a GPU: rc %d\n%s" % (proc.returncode, output))
    checks.check("--device cuda" in output and ("no CUDA device" in output or "no CUDA backend" in output),
                 "bench comm --device cuda without a GPU: unclear message:\n" + output)
    checks.finish()


if __name__ == "__main__":
    main()
