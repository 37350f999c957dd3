"""Checkpoint corruption of every kind is caught by name, never resumed silently, never a crash:

A run of 6 steps writes step_2, step_4, step_6 (format 3: a file per rank, state.h5 the index with the
metadata and virtual datasets); each case copies it and damages step_6 with the h5_edit tool, as a stray
write or a hand edit would, leaving every checksum as it was:
  meta_step     one bit of the `step` attribute flipped (6 -> 7)
  meta_layers   model_layers changed (what made verify check part of the file and export a 1-layer model)
  meta_version  format_version set to 1 (an attempt to skip the metadata checksum)
  piece_shape   a piece of h.0.attn.c_attn.weight in rank 0's file stored transposed (same element count)
  piece_missing a piece of adam_v in rank 1's file deleted
For each: `mics ckpt verify` exits 1 naming the problem, `export` exits 2 naming it and leaves no output
file (and `inspect` too for the metadata), and auto resume warns naming step_6, falls back to step_4 and
repeats the reference run's losses exactly; the newest checkpoint it then writes verifies.
  index_shape   the index's /params/h.0.attn.c_attn.weight replaced by a transposed dataset: verify,
                inspect and export refuse it; resume reads the pieces, which are intact, and uses step_6.
  extra         an extra dataset /params/extra in the index: verify names it and exits 1; resume uses step_6.
  format1       a format-1 checkpoint (written as format 2 by the old single-file writer, its checksum
                attribute removed): verify passes saying so, and resume uses it."""
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

    def damaged(case, *edits, source="base"):
        """Copies the run, then applies each edit [file, action, args...] to a file of its step_6."""
        shutil.copytree(faults.run_dir(source), faults.run_dir(case))
        step6 = os.path.join(faults.run_dir(case), "step_6")
        for edit in edits:
            faults.runner._run([args.h5_edit, os.path.join(step6, edit[0])] + list(edit[1:]), 30, True)
        return step6

    def piece(file_name, group, prefix):
        """The first dataset of `group` in a rank file of base's step_6 whose name starts with `prefix`."""
        listing = faults.runner._run([args.h5_edit, os.path.join(faults.run_dir("base"), "step_6", file_name),
                                      "list", group], 30, True).stdout.split()
        return "/%s/%s" % (group, next(name for name in listing if name.startswith(prefix)))

    def resume(case, expect_from):
        log = faults.run(case + " resume", faults.train_argv(case, "--train.steps=%d" % STEPS,
                                                             "--checkpoint.every_steps=2"), 0, 90,
                         ["resumed from ckpt/%s/step_%d " % (case, expect_from)])
        if expect_from != 6:
            faults.checks.check("skipping ckpt/%s/step_6" % case in log, case + ": the warning names step_6")
        faults.same_losses(case, case, reference, expect_from)
        faults.newest_verifies(case, case)
        return log

    c_attn = piece("shard_00000.h5", "params", "h.0.attn.c_attn.weight@")
    adam_v = piece("shard_00001.h5", "adam_v", "")
    refused = {
        "meta_step": ([["state.h5", "set-int", "step", "7"]], "the metadata checksum does not match"),
        "meta_layers": ([["state.h5", "set-int", "model_layers", "1"]], "the metadata checksum does not match"),
        "meta_version": ([["state.h5", "set-int", "format_version", "1"]], "format_version 1 with a metadata_crc64"),
        "piece_shape": ([["shard_00000.h5", "reshape", c_attn]], c_attn + " has shape"),
        "piece_missing": ([["shard_00001.h5", "delete", adam_v]], adam_v + " is missing"),
    }
    for case, (edits, message) in refused.items():
        step6 = damaged(case, *edits)
        faults.serial(case + " verify", ["ckpt", "verify", step6], 1, [message])
        if case.startswith("meta"):
            faults.serial(case + " inspect", ["ckpt", "inspect", step6], 2, [message])
        if case != "piece_missing":  # export reads /params only
            out = os.path.join(faults.dir, case + ".bin")
            faults.serial(case + " export", ["export", step6, "--format", "llmc", out], 2, [message])
            faults.checks.check(not os.path.exists(out) and not os.path.exists(out + ".tmp"),
                                case + ": export left no output file")
        log = resume(case, 4)
        faults.checks.check(message in log, case + ": the resume warning gives the reason")

    step6 = damaged("index_shape", ["state.h5", "reshape", "/params/h.0.attn.c_attn.weight"])
    message = "/params/h.0.attn.c_attn.weight has shape"
    faults.serial("index_shape verify", ["ckpt", "verify", step6], 1, [message])
    faults.serial("index_shape inspect", ["ckpt", "inspect", step6], 2, [message])
    faults.serial("index_shape export", ["export", step6, "--format", "llmc", os.path.join(faults.dir, "i.bin")], 2,
                  [message])
    resume("index_shape", 6)

    step6 = damaged("extra", ["state.h5", "copy", "/params/wte.weight", "/params/extra"])
    faults.serial("extra verify", ["ckpt", "verify", step6], 1,
                  ["dataset /params/extra is not part of the checkpoint the metadata describes"])
    resume("extra", 6)

    # An old checkpoint: the single-file writer (format 2), made format 1 by removing its checksum.
    faults.run("old format", faults.train_argv("old", "--train.steps=6", "--checkpoint.every_steps=2"), 0, 60,
               env={"MICS_CHECKPOINT_WRITE_FORMAT": "2"})
    step6 = damaged("format1", ["state.h5", "delete-attr", "metadata_crc64"], ["state.h5", "set-int", "format_version", "1"],
                    source="old")
    faults.serial("format1 verify", ["ckpt", "verify", step6], 0, ["format 1, no metadata checksum"])
    resume("format1", 6)
    faults.checks.finish()


if __name__ == "__main__":
    main()
