"""kill -9 of a rank while a checkpoint is written in the background: the job ends (mpirun returns 137)
within seconds with no process left, the checkpoint being written is never committed, `latest` still
names the previous one, which verifies and resumes to the uninterrupted run's losses exactly."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "checkpoint"))
import ckpt_test  # noqa: E402
import faultlib  # noqa: E402
import mics_test  # noqa: E402


def main():
    args = mics_test.parse_args()
    faults = faultlib.Faults(args)
    faults.run("reference", faults.train_argv("ref", "--train.steps=8", "--checkpoint.every_steps=0",
                                              "--checkpoint.at_end=false"), 0, 60)
    reference = faults.losses("ref")
    faults.run("first checkpoint", faults.train_argv("kill", "--train.steps=3", "--checkpoint.every_steps=3"), 0, 60)
    # Every dataset slowed to 150 ms: the write of step 6 lasts seconds, in the background.
    job = faults.start("killed writer", faults.train_argv("kill", "--train.steps=8", "--checkpoint.every_steps=6"),
                       env={"MICS_CHECKPOINT_WRITE_DELAY_MS": "150"})
    partial = os.path.join(faults.run_dir("kill"), "step_6.partial", "shard_00001.h5")
    try:
        ckpt_test.wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 0, 60, partial)
        os.kill(ckpt_test.rank_pid(job.proc.pid, 1), signal.SIGKILL)
    except BaseException:
        ckpt_test.stop_group(job.proc)
        raise
    faults.finish("killed writer", job, 137, 30, ["signal 9"])
    entries = sorted(os.listdir(faults.run_dir("kill")))
    faults.checks.check("step_6" not in entries, "killed writer: step_6 was not committed: %s" % entries)
    faults.checks.check(faults.latest("kill").endswith("step_3"), "killed writer: latest still names step_3")
    faults.newest_verifies("killed writer", "kill")
    log = faults.run("resume", faults.train_argv("kill", "--train.steps=8", "--checkpoint.every_steps=0"), 0, 60,
                     ["resumed from ckpt/kill/step_3 ", "skipping ckpt/kill/step_6.partial"])
    faults.same_losses("killed writer", "kill", reference, 3)
    faults.checks.finish()


if __name__ == "__main__":
    main()
