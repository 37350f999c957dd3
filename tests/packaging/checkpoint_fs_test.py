#!/usr/bin/env python3
"""jobs/lib/checkpoint_fs.sh, the checkpoint-directory settings of the training jobs, without Lustre.

Sourced by bash with stand-ins first on PATH: `stat` answers `lustre` (or another file system) for
`stat -f -c %T`, and `lfs` records its arguments, lists a chosen number of OSTs for `lfs df` and fails
`lfs setstripe` on request. Checks:
  - HDF5_USE_FILE_LOCKING is exported as FALSE, and a value already set is kept
  - mics_checkpoint_dir: the deck's [checkpoint] dir (comment stripped), --checkpoint.dir= and
    --checkpoint.dir VALUE among the options (the last wins), `checkpoints` by default
  - not Lustre: lfs is never called; Lustre without lfs: said so; both return 0
  - Lustre: stripe count 1 with at least as many ranks as OSTs, -1 with fewer, size 16M; MICS_STRIPE_COUNT
    and MICS_STRIPE_SIZE override, MICS_STRIPE=off skips
  - lfs setstripe failing, or a directory that cannot be created: reported, return 0
  - the job scripts source it and call it before starting mics
"""
import argparse
import os
import stat
import subprocess
import sys
import tempfile

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL: " + message, file=sys.stderr)


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def run(lib, script, fake_bin, env_extra=None, with_lfs=True):
    env = {"PATH": fake_bin + ":/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(env_extra or {})
    if not with_lfs:
        os.rename(os.path.join(fake_bin, "lfs"), os.path.join(fake_bin, "lfs.off"))
    try:
        body = ('mics_log() { echo "LOG: $*"; }\nsource "%s" || exit 9\n' % lib) + script
        proc = subprocess.run(["bash", "-c", body], env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)
    finally:
        if not with_lfs:
            os.rename(os.path.join(fake_bin, "lfs.off"), os.path.join(fake_bin, "lfs"))
    return proc.returncode, proc.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    args = parser.parse_args()
    lib = os.path.join(args.source_dir, "jobs", "lib", "checkpoint_fs.sh")

    with tempfile.TemporaryDirectory() as scratch:
        fake_bin = os.path.join(scratch, "bin")
        os.makedirs(fake_bin)
        calls = os.path.join(scratch, "lfs.calls")
        # stat -f -c %T DIR -> $FAKE_FS; anything else: the real stat
        write_exe(os.path.join(fake_bin, "stat"),
                  '#!/bin/bash\nif [[ $1 == -f ]]; then echo "${FAKE_FS:-ext2/ext3}"; exit 0; fi\n'
                  'exec /usr/bin/stat "$@"\n')
        write_exe(os.path.join(fake_bin, "lfs"),
                  '#!/bin/bash\necho "$*" >> "%s"\n'
                  'case $1 in\n'
                  '  df) for ((i = 0; i < ${FAKE_OSTS:-4}; i++)); do\n'
                  '        echo "fsx-OST000$i_UUID 1000 10 990 1%% /fsx[OST:$i]"; done ;;\n'
                  '  setstripe) [[ ${FAKE_SETSTRIPE_FAIL:-0} == 1 ]] && { echo "lfs setstripe: error" >&2; exit 22; } ;;\n'
                  '  getstripe) echo "stripe_count:  1 stripe_size:   16777216" ;;\n'
                  'esac\nexit 0\n' % calls)

        def lfs_calls():
            if not os.path.exists(calls):
                return []
            with open(calls) as f:
                lines = f.read().splitlines()
            os.remove(calls)
            return lines

        ckpt = os.path.join(scratch, "ckpt")

        # HDF5_USE_FILE_LOCKING
        rc, out = run(lib, 'echo "V=$HDF5_USE_FILE_LOCKING"; bash -c \'echo "C=$HDF5_USE_FILE_LOCKING"\'\n', fake_bin)
        check(rc == 0 and "V=FALSE" in out and "C=FALSE" in out, "HDF5_USE_FILE_LOCKING not exported as FALSE: %r" % out)
        rc, out = run(lib, 'echo "V=$HDF5_USE_FILE_LOCKING"\n', fake_bin, {"HDF5_USE_FILE_LOCKING": "TRUE"})
        check("V=TRUE" in out, "a value of HDF5_USE_FILE_LOCKING already set was replaced: %r" % out)

        # mics_checkpoint_dir
        deck = os.path.join(scratch, "deck.ini")
        with open(deck, "w") as f:
            f.write("[run]\nname = x\ndir = runs   # not this one\n[checkpoint]\n"
                    "every_steps = 10\ndir = /fsx/ckpt/a   # on ParallelCluster\nkeep = 2\n[train]\ndir = no\n")
        nodir = os.path.join(scratch, "nodir.ini")
        with open(nodir, "w") as f:
            f.write("[run]\nname = x\n[checkpoint]\nkeep = 2\n")
        for argv, want in (([deck], "/fsx/ckpt/a"), ([nodir], "checkpoints"),
                           ([os.path.join(scratch, "missing.ini")], "checkpoints"),
                           ([deck, "--train.steps=3", "--checkpoint.dir=/fsx/b"], "/fsx/b"),
                           ([deck, "--checkpoint.dir=/fsx/b", "--checkpoint.dir=/fsx/c"], "/fsx/c"),
                           ([deck, "--checkpoint.dir", "/fsx/d"], "/fsx/d")):
            quoted = " ".join("'%s'" % a for a in argv)
            rc, out = run(lib, "mics_checkpoint_dir %s\n" % quoted, fake_bin)
            check(rc == 0 and out.strip() == want, "mics_checkpoint_dir %s: %r, expected %r" % (argv[1:], out, want))

        # not Lustre: no lfs call
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s" 8\n' % ckpt, fake_bin, {"FAKE_FS": "nfs"})
        check(rc == 0 and "not Lustre" in out and os.path.isdir(ckpt), "nfs: rc %d %r" % (rc, out))
        check(lfs_calls() == [], "lfs called for a directory not on Lustre")
        # Lustre without lfs
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s" 8\n' % ckpt, fake_bin, {"FAKE_FS": "lustre"},
                      with_lfs=False)
        check(rc == 0 and "no lfs command" in out, "lustre without lfs: rc %d %r" % (rc, out))
        # Lustre: count from ranks and OSTs
        for ranks, osts, env, want in ((8, 4, {}, "setstripe -c 1 -S 16M"), (4, 4, {}, "setstripe -c 1 -S 16M"),
                                       (2, 4, {}, "setstripe -c -1 -S 16M"), (2, 0, {}, "setstripe -c 1 -S 16M"),
                                       (2, 4, {"MICS_STRIPE_COUNT": "2", "MICS_STRIPE_SIZE": "4M"},
                                        "setstripe -c 2 -S 4M")):
            e = dict(env, FAKE_FS="lustre", FAKE_OSTS=str(osts))
            rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s" %d; echo "rc=$?"\n' % (ckpt, ranks), fake_bin, e)
            setstripe = [c for c in lfs_calls() if c.startswith("setstripe")]
            check(rc == 0 and "rc=0" in out and setstripe == ["%s %s" % (want, ckpt)],
                  "%d ranks, %d OSTs, %s: lfs %s, expected %r; output %r" % (ranks, osts, env, setstripe, want, out))
            check("lfs setstripe" in out and "done" in out, "what was done is not printed: %r" % out)
        # SLURM_NTASKS is the default rank count
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s"\n' % ckpt, fake_bin,
                      {"FAKE_FS": "lustre", "FAKE_OSTS": "4", "SLURM_NTASKS": "16"})
        check(["setstripe -c 1 -S 16M " + ckpt] == [c for c in lfs_calls() if c.startswith("setstripe")],
              "SLURM_NTASKS=16 not used: %r" % out)
        # off
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s" 2\n' % ckpt, fake_bin,
                      {"FAKE_FS": "lustre", "MICS_STRIPE": "off"})
        check(rc == 0 and lfs_calls() == [] and "MICS_STRIPE=off" in out, "MICS_STRIPE=off: %r" % out)
        # setstripe fails: reported, the job goes on
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s" 2; echo "rc=$?"; echo after\n' % ckpt, fake_bin,
                      {"FAKE_FS": "lustre", "FAKE_SETSTRIPE_FAIL": "1"})
        lfs_calls()
        check(rc == 0 and "rc=0" in out and "after" in out and "failed" in out, "setstripe failing: %r" % out)
        # a directory that cannot be created (a file is in the way)
        blocker = os.path.join(scratch, "file")
        open(blocker, "w").close()
        rc, out = run(lib, 'mics_prepare_checkpoint_dir "%s/sub" 2; echo "rc=$?"\n' % blocker, fake_bin,
                      {"FAKE_FS": "lustre"})
        check(rc == 0 and "rc=0" in out and "cannot create" in out and lfs_calls() == [],
              "uncreatable directory: %r" % out)

    # the job scripts use it before the step
    for name in ("train.sbatch", "pcluster-gpu.sbatch"):
        with open(os.path.join(args.source_dir, "jobs", name)) as f:
            text = f.read()
        at = text.find("mics_prepare_checkpoint_dir")
        check("lib/checkpoint_fs.sh" in text and 0 <= at < text.find("mics_run_step"),
              "jobs/%s does not prepare the checkpoint directory before the step" % name)

    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("checkpoint_fs.sh: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
