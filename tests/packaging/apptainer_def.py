"""The Apptainer definition (packaging/apptainer/mics.def), without Apptainer.

  --check   its structure: a public CUDA devel base image, the sections, %files sources that exist and
            cover what the build reads, %post as valid POSIX sh (and shellcheck-clean where shellcheck is
            installed), the Debian/Ubuntu packages of %post the same as the Makefile's.
  --build   runs %post here as the shell script it is, with MICS_CONTAINER_TEST=1 (no apt-get; this
            machine has the packages): the %files sources are staged as the image would have them, built
            with the CPU backend and tests off with Catch2 hidden from CMake, and installed into a
            temporary prefix, which then passes the installed-tree checks and the image's %test.
            The build folder is kept under --work-dir, so later runs rebuild only what changed.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
sys.path.insert(0, os.path.dirname(__file__))
import install_test  # noqa: E402
import mics_test  # noqa: E402

SECTIONS = ("files", "post", "environment", "runscript", "test", "labels", "help")


def parse(path):
    header, sections, current = {}, {}, None
    for line in open(path):
        m = re.match(r"^%(\w+)\s*$", line)
        if m:
            current = m.group(1)
            sections[current] = ""
            continue
        if current is None:
            m = re.match(r"^(\w+):\s*(\S+)\s*$", line)
            if m:
                header[m.group(1)] = m.group(2)
        else:
            sections[current] += line
    return header, sections


def files_entries(text):
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(tuple(line.split()))
    return entries


def makefile_packages(source_dir):
    text = open(os.path.join(source_dir, "Makefile")).read().replace("\\\n", " ")
    m = re.search(r"^DEB_PACKAGES\s*:?=\s*(.*)$", text, re.M)
    return set(m.group(1).split())


def post_packages(post):
    m = re.search(r"apt-get install -y --no-install-recommends(.*?)\n\s*rm -rf", post.replace("\\\n", " "), re.S)
    return set(m.group(1).split()) if m else set()


def check_structure(checks, source_dir, def_path):
    header, sections = parse(def_path)
    checks.check(header.get("Bootstrap") == "docker", "Bootstrap: %r, want docker" % header.get("Bootstrap"))
    base = header.get("From", "")
    checks.check(re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-devel-ubuntu\d\d\.04", base) is not None,
                 "From: %r is not a public CUDA devel image (nvidia/cuda:X.Y.Z-devel-ubuntuNN.04)" % base)
    for name in SECTIONS:
        checks.check(name in sections, "no %%%s section" % name)

    # %files: every source exists, and together they hold what the build reads
    entries = files_entries(sections.get("files", ""))
    sources = set()
    for entry in entries:
        checks.check(len(entry) == 2, "%%files line %r: want SOURCE DESTINATION" % (entry,))
        checks.check(os.path.exists(os.path.join(source_dir, entry[0])), "%%files: no %s in the tree" % entry[0])
        checks.check(entry[1] == "/opt/mics/src/" + entry[0], "%%files: %s goes to %s" % entry)
        sources.add(entry[0])
    top = open(os.path.join(source_dir, "CMakeLists.txt")).read()
    needed = {"CMakeLists.txt", "include", "src", "jobs", "inputs", "README.md", "cmake", "bench"}
    needed |= set(re.findall(r"add_subdirectory\((\w+)\)", top)) - {"tests"}
    checks.check(needed <= sources, "%%files lacks %s" % sorted(needed - sources))

    post = sections.get("post", "")
    proc = subprocess.run(["sh", "-n"], input=post, capture_output=True, text=True)
    checks.check(proc.returncode == 0, "%%post is not valid sh: %s" % proc.stderr)
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", "-"], input=post, capture_output=True, text=True)
        checks.check(proc.returncode == 0, "shellcheck %%post:\n%s" % proc.stdout)
    for word in ("MICS_CONTAINER_TEST", "cmake --install", "-DMICS_BUILD_TESTS=OFF", "-DMICS_CUDA="):
        checks.check(word in post, "%%post has no %s" % word)

    # the same Debian/Ubuntu packages as `make deps`, less Catch2 (tests off), plus NCCL from the CUDA repo
    wanted = makefile_packages(source_dir) - {"catch2"} | {"libnccl2", "libnccl-dev"}
    got = post_packages(post)
    checks.check(got == wanted, "%%post installs %s; want the Makefile's DEB_PACKAGES less catch2, plus NCCL: "
                 "missing %s, extra %s" % (sorted(got), sorted(wanted - got), sorted(got - wanted)))
    checks.check("/opt/mics/bin" in sections.get("environment", ""), "%environment does not put mics on PATH")
    checks.check("/opt/mics/bin/mics" in sections.get("runscript", ""), "%runscript does not run mics")
    return sections


def stage_sources(source_dir, entries, staged):
    """The tree as %files puts it in the image; unchanged files keep their times (incremental builds)."""
    if os.path.isdir(staged):
        shutil.rmtree(staged)
    os.makedirs(staged)
    for src, _ in entries:
        from_path = os.path.join(source_dir, src)
        to_path = os.path.join(staged, src)
        if os.path.isdir(from_path):
            shutil.copytree(from_path, to_path, copy_function=shutil.copy2,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(from_path, to_path)


def run_post(checks, source_dir, sections, work_dir, jobs):
    os.makedirs(work_dir, exist_ok=True)
    staged = os.path.join(work_dir, "src")
    stage_sources(source_dir, files_entries(sections["files"]), staged)
    with tempfile.TemporaryDirectory(prefix="mics-apptainer-") as scratch:
        prefix = os.path.join(scratch, "opt-mics")
        env = dict(os.environ, MICS_CONTAINER_TEST="1", MICS_SRC=staged, MICS_PREFIX=prefix,
                   MICS_BUILD=os.path.join(work_dir, "build"), MICS_CUDA="OFF", MICS_BUILD_JOBS=str(jobs),
                   # tests off must not need Catch2: hide it even where it is installed
                   MICS_CMAKE_ARGS="-DCMAKE_DISABLE_FIND_PACKAGE_Catch2=ON")
        script = os.path.join(scratch, "post.sh")
        with open(script, "w") as f:
            f.write(sections["post"])
        proc = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=3000)
        log = proc.stdout + proc.stderr
        checks.check(proc.returncode == 0, "%%post exited with %d:\n%s" % (proc.returncode, log[-6000:]))
        checks.check("Catch2" not in re.sub(r"CMAKE_DISABLE_FIND_PACKAGE_Catch2", "", log),
                     "the tests-off configure mentions Catch2:\n" + log[-3000:])
        if proc.returncode != 0:
            return
        install_test.check_installed_tree(checks, prefix, scratch)
        # the image's %test, with /opt/mics here at the temporary prefix
        test = sections.get("test", "").replace("/opt/mics", prefix)
        proc = subprocess.run(["sh", "-e", "-c", test], capture_output=True, text=True, cwd=scratch, timeout=120)
        checks.check(proc.returncode == 0, "%%test: %d %s%s" % (proc.returncode, proc.stdout, proc.stderr))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--work-dir", help="where --build keeps its staged sources and build folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    def_path = os.path.join(args.source_dir, "packaging", "apptainer", "mics.def")
    checks = mics_test.Checks()
    sections = check_structure(checks, args.source_dir, def_path)
    if args.build:
        if not args.work_dir:
            parser.error("--build needs --work-dir")
        if checks.failures == 0:
            run_post(checks, args.source_dir, sections, args.work_dir, args.jobs)
    checks.finish()


if __name__ == "__main__":
    main()
