"""mics sample: greedy generation with the KV cache reproduces the plain forward pass token for token
(--verify: the argmax of the full forward's logits at every generated position); the same weights from
a checkpoint, its run directory and the llm.c file give the same tokens; sampling is reproducible by
seed; byte-level models print text, other vocabularies decode through an llm.c tokenizer file."""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402


def ids_of(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("ids:")]
    return [int(x) for x in lines[-1].split()[1:]] if lines else None


def write_tokenizer(path, pieces, eot):
    with open(path, "wb") as f:
        f.write(struct.pack("<256I", *([20240328, 2, len(pieces), eot] + [0] * 252)))
        for p in pieces:
            data = p.encode()
            f.write(struct.pack("<B", len(data)) + data)


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=60000)
    checks = mics_test.Checks()
    runner.run_mpi(2, ["train", "--deck", runner.deck("tiny.ini"), "--run.name=gen", "--train.steps=30",
                       "--train.val_every=0", "--checkpoint.dir=ckpt", "--train.save_final=final.bin"])
    step = os.path.join("ckpt", "gen", "step_30")

    class Result:
        pass

    def sample(*argv):
        """mics sample; byte-level text is bytes, not necessarily UTF-8: read as latin-1."""
        proc = subprocess.run([args.mics, "sample"] + list(argv), cwd=runner.dir, capture_output=True, timeout=120)
        r = Result()
        r.returncode, r.stdout, r.stderr = proc.returncode, proc.stdout.decode("latin-1"), proc.stderr.decode("latin-1")
        return r

    greedy = ["--temperature", "0", "-n", "50", "--prompt-ids", "5,17,99", "--ids"]
    proc = sample(step, "--verify", *greedy)
    checks.check(proc.returncode == 0 and "verify: all 50 generated tokens" in proc.stderr,
                 "greedy == plain forward: %d %s" % (proc.returncode, proc.stderr[-400:]))
    reference = ids_of(proc.stdout)
    checks.check(reference is not None and len(reference) == 50, "50 ids printed")
    for source in (os.path.join("ckpt", "gen"), os.path.join(step, "state.h5"), "final.bin"):
        proc = sample(source, *greedy)
        checks.check(ids_of(proc.stdout) == reference, "%s gives the same greedy tokens" % source)
    # the whole context: generation stops when the model's max_seq_len positions are full
    # (byte-level text is bytes, not necessarily UTF-8)
    proc = subprocess.run([args.mics, "sample", step, "--verify", "--temperature", "0", "-n", "100", "--prompt", "ab"],
                          cwd=runner.dir, capture_output=True, timeout=120)
    checks.check(b"verify: all 63 generated tokens" in proc.stderr,
                 "63 tokens fill the 64 positions (the last is never fed): %r" % proc.stderr[-300:])
    checks.check(proc.stdout.startswith(b"ab") and len(proc.stdout) == 2 + 63 + 1,
                 "byte-level text printed with the prompt: %r" % proc.stdout[:80])

    sampled = ["--temperature", "0.8", "--top-k", "20", "-n", "40", "--ids"]
    a, b, c = (ids_of(sample(step, "--seed", seed, *sampled).stdout) for seed in ("3", "3", "4"))
    checks.check(a == b and a != c, "the seed fixes the sample: %s / %s" % (a[:8], c[:8]))

    tokenizer = os.path.join(runner.dir, "tok.bin")
    write_tokenizer(tokenizer, ["<%d>" % i for i in range(256)], 255)
    proc = sample(step, "--tokenizer", tokenizer, *greedy)
    checks.check(proc.stdout.startswith("<5><17><99>" + "".join("<%d>" % t for t in reference[:3])),
                 "decoded through the tokenizer file: %r" % proc.stdout[:80])

    proc = sample(step, "--verify", "--temperature", "1")
    checks.check(proc.returncode == 2 and "greedy" in proc.stderr, "--verify needs greedy")
    proc = sample(step, "--prompt-ids", "999")
    checks.check(proc.returncode == 2 and "999" in proc.stderr, "a token outside the vocabulary is refused")
    proc = sample("nowhere")
    checks.check(proc.returncode == 2 and "nowhere" in proc.stderr, "a missing model is refused: %s" % proc.stderr)
    checks.finish()


if __name__ == "__main__":
    main()
