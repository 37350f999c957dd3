"""A `latest` that holds garbage (control bytes, a BOM, a NUL -- a hand edit or a disk fault) must not be
taken for "no checkpoint": auto resume warns, naming the file and its content escaped, and resumes from
the newest committed checkpoint; `mics ckpt list` marks it too."""
import os

import ckpt_test
from ckpt_test import mics_test

GARBAGE = b"\x00\xef\xbb\xbfstep_\x1b[2J4\n"
SHOWN = "holds '\\0\\xEF\\xBB\\xBFstep_\\x1B[2J4\\n'"


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args, tokens=20000)
    checks = mics_test.Checks()
    argv = ckpt_test.train_argv(runner, "garbage", "--checkpoint.every_steps=2")
    runner.run_mpi(2, argv + ["--train.steps=6"])
    run_dir = ckpt_test.run_dir(runner, "garbage")
    latest = os.path.join(run_dir, "latest")
    with open(latest, "wb") as f:
        f.write(GARBAGE)

    listing = runner.run_serial(["ckpt", "list", run_dir])
    text = listing.stdout + listing.stderr
    checks.check("warning: " + latest + " " + SHOWN in text, "ckpt list names the file and its content:\n" + text)
    rows = [line for line in text.splitlines() if "step_6" in line]
    checks.check(rows and "resume (latest is unusable)" in rows[0], "ckpt list marks step_6 as what resume takes:\n" + text)
    checks.check("\x00" not in text and "\x1b" not in text, "no raw control byte is printed")

    resumed = runner.run_mpi(2, argv + ["--train.steps=8"])
    log = resumed.stdout + resumed.stderr
    checks.check("checkpoint: " + os.path.join("ckpt", "garbage", "latest") + " " + SHOWN in log and
                 "trying the newest committed checkpoint instead" in log,
                 "the resume warns, naming the file and its escaped content:\n" + log[-3000:])
    checks.check("resumed from " + os.path.join("ckpt", "garbage", "step_6") + " at step 6" in log,
                 "resumed from the newest committed checkpoint:\n" + log[-3000:])
    with open(latest) as f:
        checks.check(f.read().strip() == "step_8", "the next commit rewrites latest")
    checks.finish()


if __name__ == "__main__":
    main()
