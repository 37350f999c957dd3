"""`cmake --install` of this build into a fresh prefix: bin/mics runs (--version, --help, config of an
installed deck), jobs/, inputs/ and the docs are where they belong, and the job scripts find mics in the
documented order: $MICS_CONTAINER, $MICS (or $MICS_BIN), the installed bin/mics, PATH, <repo>/build/mics.
No MPI job is started (mics runs as a single process, which needs no mpirun)."""
import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

JOB_SCRIPTS = ["train.sbatch", "pcluster-gpu.sbatch", "sweep-partition.sbatch", "bench-comm.sbatch", "demo.sh"]
BASE_PATH = "/usr/bin:/bin"


def run(cmd, env=None, cwd=None, timeout=120):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MICS", "SLURM_", "APPTAINER", "SINGULARITY"))}
    env["PATH"] = BASE_PATH
    env.update(extra)
    return env


def find_step(jobs_dir, env, cwd=None):
    """MICS_STEP (one word a line) as lib/find_mics.sh sets it, and the exit status."""
    script = ('MICS_JOBS_DIR="$1"; source "$MICS_JOBS_DIR/lib/find_mics.sh" || exit 3; mics_find_binary; '
              'printf "%s\\n" "${MICS_STEP[@]}"')
    proc = run(["bash", "-c", script, "find_mics", jobs_dir], env=env, cwd=cwd)
    return proc.stdout.splitlines(), proc.returncode, proc.stderr


def write_exe(path, text="#!/bin/sh\nexit 0\n"):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def check_installed_tree(checks, prefix, scratch):
    """What an installed prefix must hold and do; used by this test and the container-build test."""
    mics = os.path.join(prefix, "bin", "mics")
    jobs = os.path.join(prefix, "share", "mics", "jobs")
    inputs = os.path.join(prefix, "share", "mics", "inputs")
    checks.check(os.access(mics, os.X_OK), "no executable %s" % mics)
    for name in JOB_SCRIPTS:
        path = os.path.join(jobs, name)
        checks.check(os.access(path, os.X_OK), "job script %s missing or not executable" % path)
    for name in ("requeue.sh", "efa.sh", "find_mics.sh", "checkpoint_fs.sh", "install_layout.sh"):
        checks.check(os.path.isfile(os.path.join(jobs, "lib", name)), "jobs/lib/%s not installed" % name)
    for name in ("tiny.ini", "demo.ini", "gpt2-124m.ini"):
        checks.check(os.path.isfile(os.path.join(inputs, name)), "inputs/%s not installed" % name)
    checks.check(os.path.isfile(os.path.join(prefix, "share", "doc", "mics", "README.md")),
                 "the README is not installed in share/doc/mics")
    if not os.access(mics, os.X_OK):
        return

    env = clean_env()
    proc = run([mics, "--version"], env=env, cwd=scratch)
    checks.check(proc.returncode == 0 and proc.stdout.startswith("mics "), "mics --version: %d %r %r" %
                 (proc.returncode, proc.stdout, proc.stderr[-2000:]))
    proc = run([mics, "--help"], env=env, cwd=scratch)
    checks.check(proc.returncode == 0 and "usage" in proc.stdout.lower(), "mics --help: %d %r" %
                 (proc.returncode, proc.stdout[:300]))
    proc = run([mics, "config", "--deck", os.path.join(inputs, "tiny.ini")], env=env, cwd=scratch)
    checks.check(proc.returncode == 0 and "[model]" in proc.stdout, "mics config of the installed tiny.ini: %d %r" %
                 (proc.returncode, (proc.stdout + proc.stderr)[-2000:]))

    # The installed jobs find the installed mics with nothing on PATH and no MICS set.
    step, rc, err = find_step(jobs, env)
    checks.check(rc == 0 and len(step) == 1 and os.path.realpath(step[0]) == os.path.realpath(mics),
                 "installed jobs found %s (rc %d, %s), want %s" % (step, rc, err.strip(), mics))
    # A moved prefix still works: the layout file is relative.
    moved = os.path.join(scratch, "moved")
    shutil.copytree(prefix, moved, symlinks=True)
    step, rc, err = find_step(os.path.join(moved, "share", "mics", "jobs"), env)
    checks.check(rc == 0 and step and os.path.realpath(step[0]) == os.path.realpath(os.path.join(moved, "bin", "mics")),
                 "moved prefix: jobs found %s (rc %d, %s)" % (step, rc, err.strip()))
    shutil.rmtree(moved)
    # $MICS wins over the installed one, and MICS_BIN is the same thing.
    other = os.path.join(scratch, "other-mics")
    write_exe(other)
    for var in ("MICS", "MICS_BIN"):
        step, rc, _ = find_step(jobs, clean_env(**{var: other}))
        checks.check(rc == 0 and step == [other], "%s=%s: jobs found %s" % (var, other, step))
    # the installed demo.sh finds its decks and the binary (the run itself is `make run`'s business)
    text = open(os.path.join(jobs, "demo.sh")).read()
    checks.check('inputs=$(cd "$MICS_JOBS_DIR/../inputs"' in text, "installed demo.sh does not use the installed inputs")


def check_finding_order(checks, source_dir, scratch):
    """The source tree's jobs: $MICS, PATH, then <repo>/build/mics; containers; errors."""
    jobs = os.path.join(os.path.abspath(source_dir), "jobs")
    checks.check(not os.path.exists(os.path.join(jobs, "lib", "install_layout.sh")),
                 "jobs/lib/install_layout.sh is in the source tree: it belongs to installed trees only")
    bin_dir = os.path.join(scratch, "bin")
    os.makedirs(bin_dir)
    on_path = os.path.join(bin_dir, "mics")
    write_exe(on_path)
    step, rc, _ = find_step(jobs, clean_env(PATH=bin_dir + ":" + BASE_PATH))
    checks.check(rc == 0 and step == [on_path], "source tree, mics on PATH: found %s, want %s" % (step, on_path))
    step, rc, err = find_step(jobs, clean_env())
    want = os.path.join(os.path.realpath(source_dir), "build", "mics")
    if os.access(want, os.X_OK):
        checks.check(rc == 0 and step == [want], "source tree, nothing on PATH: found %s, want %s" % (step, want))
    else:
        checks.check(rc == 2 and "MICS_CONTAINER" in err, "no mics anywhere: rc %d, %r" % (rc, err))

    # Containers: a stand-in apptainer on PATH; the image must exist; pyxis gives srun options.
    write_exe(os.path.join(bin_dir, "apptainer"))
    image = os.path.join(scratch, "mics.sif")
    open(image, "w").close()
    env = clean_env(PATH=bin_dir + ":" + BASE_PATH, MICS_CONTAINER=image)
    step, rc, err = find_step(jobs, env)
    checks.check(rc == 0 and step == ["apptainer", "exec", "--nv", image, "mics"],
                 "MICS_CONTAINER=%s: MICS_STEP %s (rc %d, %s)" % (image, step, rc, err.strip()))
    step, rc, _ = find_step(jobs, dict(env, MICS_CONTAINER_MOUNTS="/fsx,/scratch:/data"))
    checks.check(step == ["apptainer", "exec", "--nv", "--bind", "/fsx,/scratch:/data", image, "mics"],
                 "apptainer mounts: %s" % step)
    step, rc, err = find_step(jobs, dict(env, MICS_CONTAINER=os.path.join(scratch, "missing.sif")))
    checks.check(rc == 2 and "no such image" in err, "missing image: rc %d, %r" % (rc, err))
    step, rc, err = find_step(jobs, clean_env(MICS_CONTAINER=image))
    checks.check(rc == 2 and "pyxis" in err, "no apptainer installed: rc %d, %r" % (rc, err))
    work = os.path.join(scratch, "work")
    os.makedirs(work)
    step, rc, err = find_step(jobs, clean_env(MICS_CONTAINER="/images/mics.sqsh", MICS_CONTAINER_MOUNTS="/fsx"),
                              cwd=work)
    work = os.path.realpath(work)
    checks.check(rc == 0 and step == ["--container-image=/images/mics.sqsh", "--container-workdir=" + work,
                                      "--container-mounts=" + work + ",/fsx", "mics"],
                 "pyxis: MICS_STEP %s (rc %d, %s)" % (step, rc, err.strip()))
    # the job scripts start the step with MICS_STEP
    for name in JOB_SCRIPTS:
        text = open(os.path.join(jobs, name)).read()
        checks.check('"${MICS_STEP[@]}"' in text and '"$MICS" ' not in text,
                     "jobs/%s does not start mics through MICS_STEP" % name)
        proc = run(["bash", "-n", os.path.join(jobs, name)])
        checks.check(proc.returncode == 0, "bash -n jobs/%s: %s" % (name, proc.stderr))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--cmake", default="cmake")
    args = parser.parse_args()
    checks = mics_test.Checks()
    with tempfile.TemporaryDirectory(prefix="mics-install-") as scratch:
        prefix = os.path.join(scratch, "prefix")
        proc = run([args.cmake, "--install", args.build_dir, "--prefix", prefix], timeout=300)
        checks.check(proc.returncode == 0, "cmake --install: %d\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
        check_installed_tree(checks, prefix, scratch)
        check_finding_order(checks, args.source_dir, scratch)
    checks.finish()


if __name__ == "__main__":
    main()
