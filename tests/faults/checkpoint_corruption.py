"""Checkpoint corruption of every kind is caught by name, never resumed silently, never a crash:

A run of 6 steps writes step_2, step_4, step_6; each case copies it and damages step_6 (with the h5_edit
tool, as a stray write or a hand edit would, leaving every checksum as it was):
  meta_step     one bit of the `step` attribute flipped (6 -> 7)
  meta_layers   model_layers changed (what made verify check part of the file and export a 1-layer model)
  meta_version  format_version set to 1 (an attempt to skip the metadata checksum)
  shape         /params/h.0.attn.c_attn.weight transposed: the same element count under other dims
  missing       /adam_v/wte.weight deleted
For each: `mics ckpt verify` exits 1 naming the problem, `inspect` and `export` exit 2 naming it (export
leaves no output file), and auto resume warns naming step_6, falls back to step_4 and repeats the
reference run's losses exactly; the newest checkpoint it then writes verifies.
  extra         an extra dataset /params/extra: verify names it and exits 1; resume uses step_6 (its
                tensors are complete and intact).
  format1       a genuine format-1 file (no checksum attribute): verify passes saying so; resume uses it."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
import mics_test  # noqa: E402

STEPS = 8


def main():
    args = mics_test.parse_args(lambda p: p.add_argument("--h5-edit", required=True))
    faults = faultlib.Faults(args)
    faults.run("reference", faults.train_argv("ref", "--train.steps=%d" % STEPS, "--checkpoint.every_steps=0",
                                              "--checkpoint.at_end=false"), 0, 60)
    reference = faults.losses("ref")
    faults.run("base", faults.train_argv("base", "--train.steps=6", "--checkpoint.every_steps=2"), 0, 60)

    def damaged(case, *edits):
        shutil.copytree(faults.run_dir("base"), faults.run_dir(case))
        state = os.path.join(faults.run_dir(case), "step_6", "state.h5")
        for edit in edits:
            faults.runner._run([args.h5_edit, state] + list(edit), 30, True)
        return os.path.join(faults.run_dir(case), "step_6")

    def resume(case, expect_from):
        log = faults.run(case + " resume", faults.train_argv(case, "--train.steps=%d" % STEPS,
                                                             "--checkpoint.every_steps=2"), 0, 90,
                         ["resumed from ckpt/%s/step_%d " % (case, expect_from)])
        if expect_from != 6:
            faults.checks.check("skipping ckpt/%s/step_6" % case in log, case + ": the warning names step_6")
        faults.same_losses(case, case, reference, expect_from)
        faults.newest_verifies(case, case)
        return log

    refused = {
        "meta_step": ([["set-int", "step", "7"]], "the metadata checksum does not match"),
        "meta_layers": ([["set-int", "model_layers", "1"]], "the metadata checksum does not match"),
        "meta_version": ([["set-int", "format_version", "1"]], "format_version 1 with a metadata_crc64"),
        "shape": ([["reshape", "/params/h.0.attn.c_attn.weight"]], "/params/h.0.attn.c_attn.weight has shape"),
        "missing": ([["delete", "/adam_v/wte.weight"]], "dataset /adam_v/wte.weight is missing"),
    }
    for case, (edits, message) in refused.items():
        step6 = damaged(case, *edits)
        faults.serial(case + " verify", ["ckpt", "verify", step6], 1, [message])
        if case != "missing":  # inspect shows /params only, export reads /params only
            faults.serial(case + " inspect", ["ckpt", "inspect", step6], 2, [message])
            out = os.path.join(faults.dir, case + ".bin")
            faults.serial(case + " export", ["export", step6, "--format", "llmc", out], 2, [message])
            faults.checks.check(not os.path.exists(out) and not os.path.exists(out + ".tmp"),
                                case + ": export left no output file")
        log = resume(case, 4)
        faults.checks.check(message in log, case + ": the resume warning gives the reason")

    step6 = damaged("extra", ["copy", "/params/wte.weight", "/params/extra"])
    faults.serial("extra verify", ["ckpt", "verify", step6], 1,
                  ["dataset /params/extra is not part of the checkpoint the metadata describes"])
    resume("extra", 6)

    step6 = damaged("format1", ["delete-attr", "metadata_crc64"], ["set-int", "format_version", "1"])
    faults.serial("format1 verify", ["ckpt", "verify", step6], 0, ["format 1, no metadata checksum"])
    resume("format1", 6)
    faults.checks.finish()


if __name__ == "__main__":
    main()
