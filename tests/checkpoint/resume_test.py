"""Exact resume and resharding.

A run of 20 steps on 4 ranks (mics, p = 2) writes checkpoints at steps 10 and 20. Resuming its step-10
checkpoint on the same layout must log bit-identical losses for steps 11..20 (same states, same
schedule, counter-based sampler). Resuming on other layouts with the same global batch of 16 sequences
(8 ranks mics p = 4, 2 ranks zero3, 1 rank with grad_accum 4) must continue within 1e-5 relative: the
layouts differ only in the order of gradient sums (about 1e-7 relative per step, see the engine's
equivalence test). Also: h5dump shows named tensors and the metadata, and mics ckpt list, inspect and
verify describe the checkpoints."""
import os
import shutil
import subprocess

import ckpt_test
from ckpt_test import mics_test

TOLERANCE = 1e-5


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()

    runner.run_mpi(4, ckpt_test.train_argv(runner, "ref", "--checkpoint.every_steps=10", *ckpt_test.REFERENCE_LAYOUT))
    reference = runner.losses("ref")
    checks.check(len(reference) == ckpt_test.STEPS, "reference logged %d steps" % len(reference))
    ref_dir = ckpt_test.run_dir(runner, "ref")
    step10 = os.path.join(ref_dir, "step_10")
    for step in (10, 20):
        checks.check(os.path.isfile(os.path.join(ref_dir, "step_%d" % step, "state.h5")), "step_%d committed" % step)
    with open(os.path.join(ref_dir, "latest")) as f:
        checks.check(f.read().strip() == "step_20", "latest names step_20")

    # Same layout: identical losses.
    runner.run_mpi(4, ckpt_test.train_argv(runner, "same", "--train.resume=" + step10, *ckpt_test.REFERENCE_LAYOUT))
    same = runner.losses("same")
    checks.check(same == reference[10:], "same-layout resume: losses %s differ from %s" % (same[:3], reference[10:13]))

    # Other layouts, global batch kept at 16 sequences.
    layouts = [
        ("w8_mics_p4", 8, ["--topology.ranks_per_node=4", "--parallel.partition_size=4", "--train.micro_batch=2"]),
        ("w2_zero3", 2, ["--parallel.strategy=zero3", "--train.micro_batch=8"]),
        ("w1", 1, ["--train.micro_batch=4", "--train.grad_accum=4"]),
    ]
    for name, ranks, layout in layouts:
        proc = runner.run_mpi(ranks, ckpt_test.train_argv(runner, name, "--train.resume=" + step10, *layout))
        losses = runner.losses(name)
        checks.check(len(losses) == 10, "%s logged %d steps after resuming" % (name, len(losses)))
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, reference[10:]))
        checks.check(worst <= TOLERANCE, "%s: resumed losses differ by %.3g relative" % (name, worst))
        checks.check("resumed from " + step10 in proc.stdout + proc.stderr, "%s logs where it resumed" % name)

    # The files speak for themselves.
    state = os.path.join(step10, "state.h5")
    if shutil.which("h5dump"):
        dump = subprocess.run(["h5dump", "-H", state], capture_output=True, text=True, timeout=60).stdout
        for needle in ['GROUP "params"', 'GROUP "adam_m"', 'GROUP "adam_v"', 'DATASET "h.1.attn.c_attn.weight"',
                       "( 192, 64 )", 'DATASET "wte.weight"', 'ATTRIBUTE "step"', 'ATTRIBUTE "deck"',
                       'ATTRIBUTE "topology_world"', 'ATTRIBUTE "tokens_seen"', 'ATTRIBUTE "sampler_position"']:
            checks.check(needle in dump, "h5dump -H shows " + needle)
        step_attr = subprocess.run(["h5dump", "-a", "/step", state], capture_output=True, text=True, timeout=60).stdout
        checks.check("(0): 10" in step_attr, "h5dump reads the step attribute as 10")
    else:
        print("h5dump not installed: skipping its checks")

    listing = runner.run_serial(["ckpt", "list", ref_dir]).stdout
    checks.check("step_10" in listing and "step_20" in listing and "committed" in listing and "latest" in listing,
                 "ckpt list:\n" + listing)
    inspect = runner.run_serial(["ckpt", "inspect", step10]).stdout
    for needle in ["step              10", "saved by          4 ranks, strategy mics, p=2", "h.0.mlp.c_fc.weight",
                   "[256, 64]", "virtual", "xxh64", "[run]"]:
        checks.check(needle in inspect, "ckpt inspect shows " + needle)
    verify = runner.run_serial(["ckpt", "verify", step10], check=False)
    checks.check(verify.returncode == 0 and "every checksum verified" in verify.stdout,
                 "ckpt verify of a sound checkpoint: %d %s" % (verify.returncode, verify.stdout + verify.stderr))
    checks.finish()


if __name__ == "__main__":
    main()
