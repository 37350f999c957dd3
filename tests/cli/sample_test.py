"""mics sample: greedy generation with the KV cache reproduces the plain forward pass token for token
(--verify: the argmax of the full forward's logits at every generated position); the same weights from
a checkpoint, its run directory and the llm.c file give the same tokens; sampling is reproducible by
seed; byte-level models print text, other vocabularies decode through an llm.c tokenizer file."""
import os
import struct
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

    greedy = ["--temperature", "0", "-n", "50", "--prompt-ids", "5,17,99", "--ids"]
    proc = runner.run_serial(["sample", step, "--verify"] + greedy, check=False)
    checks.check(proc.returncode == 0 and "verify: all 50 generated tokens" in proc.stderr,
                 "greedy == plain forward: %d %s" % (proc.returncode, proc.stderr[-400:]))
    reference = ids_of(proc.stdout)
    checks.check(reference is not None and len(reference) == 50, "50 ids printed")
    for source in (os.path.join("ckpt", "gen"), os.path.join(step, "state.h5"), "final.bin"):
        proc = runner.run_serial(["sample", source] + greedy)
        checks.check(ids_of(proc.stdout) == reference, "%s gives the same greedy tokens" % source)
    # the whole context: generation stops when the model's max_seq_len positions are full
    proc = runner.run_serial(["sample", step, "--verify", "--temperature", "0", "-n", "100", "--prompt", "ab"])
    checks.check("verify: all 63 generated tokens" in proc.stderr, "63 tokens fill the 64 positions (the last is never fed): %s" % proc.stderr[-300:])
    checks.check(proc.stdout.startswith("ab"), "byte-level text printed with the prompt")

    sampled = ["--temperature", "0.8", "--top-k", "20", "-n", "40", "--ids"]
    a = ids_of(runner.run_serial(["sample", step, "--seed", "3"] + sampled).stdout)
    b = ids_of(runner.run_serial(["sample", step, "--seed", "3"] + sampled).stdout)
    c = ids_of(runner.run_serial(["sample", step, "--seed", "4"] + sampled).stdout)
    checks.check(a == b and a != c, "the seed fixes the sample: %s / %s" % (a[:8], c[:8]))

    tokenizer = os.path.join(runner.dir, "tok.bin")
    write_tokenizer(tokenizer, ["<%d>" % i for i in range(256)], 255)
    proc = runner.run_serial(["sample", step, "--tokenizer", tokenizer] + greedy)
    checks.check(proc.stdout.startswith("<5><17><99>" + "".join("<%d>" % t for t in reference[:3])),
                 "decoded through the tokenizer file: %r" % proc.stdout[:80])

    proc = runner.run_serial(["sample", step, "--verify", "--temperature", "1"], check=False)
    checks.check(proc.returncode == 2 and "greedy" in proc.stderr, "--verify needs greedy")
    proc = runner.run_serial(["sample", step, "--prompt-ids", "999"], check=False)
    checks.check(proc.returncode == 2 and "999" in proc.stderr, "a token outside the vocabulary is refused")
    proc = runner.run_serial(["sample", "nowhere"], check=False)
    checks.check(proc.returncode == 2 and "nowhere" in proc.stderr, "a missing model is refused: %s" % proc.stderr)
    checks.finish()


if __name__ == "__main__":
    main()
