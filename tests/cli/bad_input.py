"""Bad decks, options and shapes: each must stop every rank with a non-zero exit within seconds and
print a message that names the key, file, line or numbers at fault."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

SECONDS = 15  # generous on a loaded 2-core machine; a hang would hit the 60 s timeout instead


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()
    tiny = runner.deck("tiny.ini")

    def write(name, text):
        path = os.path.join(runner.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return name

    def expect_failure(label, ranks, argv, *fragments, env=None, every_rank=True):
        # Every rank reports its own exit status through a wrapper shell.
        wrapper = ["sh", "-c", 'mics="$1"; shift; "$mics" "$@"; rc=$?; '
                   'echo "rank-exit ${OMPI_COMM_WORLD_RANK:-0} $rc"; exit $rc', "sh", args.mics] + argv
        # mpirun must not kill the other ranks when the first one exits, so each can report its own exit.
        cmd = [args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", str(ranks)]
        if every_rank:
            cmd += ["--mca", "orte_abort_on_non_zero_status", "0"]
        if env:
            for key, value in env.items():
                cmd += ["-x", "%s=%s" % (key, value)]
        start = time.monotonic()
        proc = subprocess.run(cmd + wrapper, cwd=runner.dir, capture_output=True, text=True, timeout=60)
        seconds = time.monotonic() - start
        output = proc.stdout + proc.stderr
        if not every_rank:
            checks.check(proc.returncode != 0, "%s: mpirun exited 0" % label)
        checks.check(seconds < SECONDS, "%s: took %.1f s" % (label, seconds))
        for fragment in fragments:
            checks.check(fragment in output, "%s: message lacks %r in:\n%s" % (label, fragment, output[-2000:]))
        if every_rank:
            exits = {}
            for line in output.splitlines():
                if line.startswith("rank-exit "):
                    _, rank, rc = line.split()
                    exits[int(rank)] = int(rc)
            checks.check(sorted(exits) == list(range(ranks)) and all(rc == 2 for rc in exits.values()),
                         "%s: every rank must exit with 2, got %s" % (label, exits))
        print("%-28s rc=%d %.1fs" % (label, proc.returncode, seconds), flush=True)

    expect_failure("unknown key", 4, ["train", "--deck", write("typo.ini", "[train]\nsteps = 5\nlr = 1e-3\nstpes = 3\n")],
                   "typo.ini:4: unknown key 'train.stpes' (did you mean 'train.steps'?)")
    expect_failure("unknown section", 4, ["train", "--deck", write("section.ini", "[trian]\nsteps = 5\n")],
                   "section.ini:1:", "trian", "did you mean")
    expect_failure("not a number", 4, ["train", "--deck", write("lr.ini", "[train]\nlr = abc\n")],
                   "lr.ini:2:", "train.lr = abc is not a number")
    expect_failure("out of range", 4, ["train", "--deck", write("steps.ini", "[train]\nsteps = 0\n")],
                   "steps.ini:2:", "train.steps = 0 is out of range")
    expect_failure("bad choice", 4, ["train", "--deck", tiny, "--parallel.strategy=fsdp"],
                   "parallel.strategy = fsdp", "mics")
    expect_failure("malformed line", 4, ["train", "--deck", write("junk.ini", "[train]\nsteps 5\n")],
                   "junk.ini:2:")
    expect_failure("duplicate key", 4, ["train", "--deck", write("dup.ini", "[train]\nsteps = 5\n\nsteps = 6\n")],
                   "dup.ini:4:", "duplicate key 'train.steps'")
    expect_failure("unknown override", 4, ["train", "--deck", tiny, "--train.stpes=3"],
                   "unknown option '--train.stpes'", "did you mean '--train.steps'")
    expect_failure("missing deck", 4, ["train", "--deck", "nowhere.ini"], "nowhere.ini")
    expect_failure("deck not given", 2, ["train"], "--deck FILE is required")
    expect_failure("p does not divide world", 4,
                   ["train", "--deck", tiny, "--topology.ranks_per_node=2", "--parallel.partition_size=3"],
                   "4", "3")
    expect_failure("group straddles nodes", 6,
                   ["train", "--deck", tiny, "--topology.ranks_per_node=3", "--parallel.partition_size=2"],
                   "3", "2")
    expect_failure("ranks per node", 4, ["train", "--deck", tiny, "--topology.ranks_per_node=3"], "3", "4")
    expect_failure("p larger than world", 2, ["train", "--deck", tiny, "--parallel.partition_size=4",
                                              "--topology.ranks_per_node=2"], "4")
    expect_failure("singletons under srun", 2, ["train", "--deck", tiny], "srun --mpi=pmix",
                   env={"SLURM_NTASKS": "8"})
    expect_failure("heads vs channels", 2, ["train", "--deck", tiny, "--model.heads=5"],
                   "model.heads = 5", "model.channels")
    expect_failure("sequence too long", 2, ["train", "--deck", tiny, "--model.seq_len=4096"],
                   "model.seq_len = 4096")
    # Data errors are found while loading on every rank; the ranks agree and all exit with the key named.
    expect_failure("no training data", 2, ["train", "--deck", tiny, "--data.train=nowhere/*.bin"],
                   "data.train = nowhere/*.bin", "no files match")
    # The backend is made on every rank and the ranks agree: no visible GPU (hidden here, so the case runs
    # on GPU machines too) or a build without CUDA is a named error on all of them.
    expect_failure("cuda without a GPU", 2, ["train", "--deck", tiny, "--backend.device=cuda"],
                   "backend.device = cuda", "CUDA", env={"CUDA_VISIBLE_DEVICES": ""})
    expect_failure("bf16 on the cpu", 2, ["train", "--deck", tiny, "--backend.matmul=bf16"],
                   "backend.matmul = bf16", "backend.device = cuda")
    expect_failure("bad bench option", 2, ["bench", "comm", "-b", "lots"], "lots")
    # Values that would overflow their type once read are refused, not wrapped or made infinite.
    expect_failure("integer beyond int", 2, ["train", "--deck", tiny, "--train.steps=4294967297"],
                   "train.steps = 4294967297 is out of range", "2147483647")
    expect_failure("float beyond float", 2, ["train", "--deck", tiny, "--train.lr=1e300"],
                   "train.lr = 1e300 is out of range")
    expect_failure("deck given twice", 2, ["train", "--deck", tiny, "--deck", tiny], "--deck is given twice")
    # A model that cannot fit is refused before anything is allocated, with the estimate and what would help.
    expect_failure("model too large", 2, ["train", "--deck", tiny, "--model.preset=gpt2-1.5b", "--model.seq_len=1024",
                                          "--topology.ranks_per_node=2", "--parallel.partition_size=1"],
                   "the memory plan needs", "available", "parallel.partition_size (now 1)", "train.recompute = blocks")
    # Files of the wrong kind are refused by kind, at once (a FIFO would block every rank in open()).
    fifo = os.path.join(runner.dir, "deck.fifo")
    os.mkfifo(fifo)
    expect_failure("deck is a FIFO", 2, ["train", "--deck", "deck.fifo"], "deck.fifo", "not a regular file")
    os.makedirs(os.path.join(runner.dir, "shards", "train_000.bin"), exist_ok=True)
    expect_failure("shard is a directory", 2, ["train", "--deck", tiny, "--data.train=shards/train_*.bin"],
                   "shards/train_000.bin", "is a directory")
    os.mkfifo(os.path.join(runner.dir, "shards", "train_001.bin"))
    expect_failure("shard is a FIFO", 2, ["train", "--deck", tiny, "--data.train=shards/train_001.bin"],
                   "train_001.bin", "not a regular file")
    # An error that only rank 1 sees (its log file is a directory) still stops the whole job at once.
    os.makedirs(os.path.join(runner.dir, "logs", "rank1.log"), exist_ok=True)
    expect_failure("one rank fails", 4, ["train", "--deck", tiny, "--log.file=logs/rank%r.log"],
                   "error on rank 1", "logs/rank1.log", every_rank=False)
    # And as users run it: mpirun itself reports the failure.
    expect_failure("mpirun exit status", 4, ["train", "--deck", tiny, "--train.stpes=3"], "did you mean",
                   every_rank=False)
    checks.finish()


if __name__ == "__main__":
    main()
