#!/usr/bin/env python3
"""Architecture rules of the source tree, checked without building anything.

1. Include rules. Every `#include "mics/<area>/..."` (or <...>) in include/mics/** and src/** must name
   the file's own area or an area that ALLOWED_INCLUDES below lists for it. The area of a file is its
   first path component under include/mics/ or src/ (src/backends/cuda/comm/x.cpp is area `backends`,
   src/cli/x.cpp is area `cli`). A file in an area without a rule, or an include of an area without a
   rule, is a violation too: a new area gets its line in the table first.
2. Document references. Every line of the text files under DOC_DIRS that names a `<name>.md` file must
   name a file of the repository, resolved relative to the naming file's folder or to the repository
   root; with a `#heading` anchor, that heading must exist in the named file (GitHub's anchor rules).
   The project must stand alone: comments point into docs/, not at documents elsewhere.

Usage: python3 tests/architecture/check_layout.py [--source-dir DIR]
Prints one line per violation (path:line: rule: detail) and exits 1 if there is any, else 0.
"""
import argparse
import os
import re
import subprocess
import sys

# --- the rules, as data ---------------------------------------------------------------------------

ANY = "*"  # the area may include every area

# area -> the other areas its files may include (an area may always include itself).
ALLOWED_INCLUDES = {
    "util": (),
    "log": ("util",),
    "config": ("util", "log"),
    "topology": ("util", "log", "config"),
    "comm": ("util", "log", "config", "topology"),
    "backends": ("util", "log", "config", "topology", "comm"),
    "model": ("util", "log", "config", "backends"),
    "data": ("util", "log", "config"),
    "optim": ("util", "log", "config", "backends"),
    "engine": ("util", "log", "config", "topology", "comm", "backends", "model", "optim"),
    "checkpoint": ("util", "log", "config", "topology", "comm", "backends", "model", "optim", "engine"),
    "training": ("util", "log", "config", "topology", "comm", "backends", "model", "data", "optim", "engine",
                 "checkpoint"),
    "planner": ("util", "log", "config", "topology", "comm", "backends", "model", "optim", "engine"),
    "cli": ANY,
}

# Folders whose files carry areas, and the suffixes of the files whose includes are checked.
AREA_ROOTS = ("include/mics", "src")
CODE_SUFFIXES = (".hpp", ".h", ".hh", ".cpp", ".cc", ".cxx", ".cu", ".cuh", ".inl")

# Folders whose text files may name documents only if the repository has them.
DOC_DIRS = ("src", "include", "tests", "bench", "jobs", "docs")

# Files exempt from the document check, with the reason.
DOC_EXEMPT: dict = {}

# --- implementation -------------------------------------------------------------------------------

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*["<]mics/([^">]+)[">]')
DOC_RE = re.compile(r"([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md)\b(#[A-Za-z0-9_-]+)?")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def repository_files(root):
    """Relative paths of the files the repository holds: git's tracked and not-ignored files that exist
    in the working tree, or every file under root when it is not a git checkout."""
    try:
        listed = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=True, timeout=60).stdout
        names = {n.decode("utf-8", "surrogateescape") for n in listed.split(b"\0") if n}
        return {n for n in names if os.path.isfile(os.path.join(root, n))}
    except (OSError, subprocess.SubprocessError):
        found = set()
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "build"]
            for f in files:
                found.add(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/"))
        return found


def read_lines(path):
    """The file's lines, or None for a binary or unreadable file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def area_of(path):
    """(root, area) of a repository path under an area root, else None."""
    for root in AREA_ROOTS:
        prefix = root + "/"
        if path.startswith(prefix):
            rest = path[len(prefix):]
            return root, (rest.split("/", 1)[0] if "/" in rest else None)
    return None


def check_includes(root, files, report):
    for path in sorted(files):
        located = area_of(path)
        if located is None or not path.endswith(CODE_SUFFIXES):
            continue
        area_root, area = located
        if area is None:
            report(path, 0, "area", "file lies directly in %s/, outside every area" % area_root)
            continue
        if area not in ALLOWED_INCLUDES:
            report(path, 0, "area", "area '%s' has no rule in ALLOWED_INCLUDES" % area)
            continue
        allowed = ALLOWED_INCLUDES[area]
        for number, line in enumerate(read_lines(os.path.join(root, path)) or [], 1):
            match = INCLUDE_RE.match(line)
            if not match:
                continue
            target = match.group(1)
            if "/" not in target:
                report(path, number, "include", '"mics/%s" lies outside every area' % target)
                continue
            included = target.split("/", 1)[0]
            if included == area or allowed == ANY:
                continue
            if included not in ALLOWED_INCLUDES:
                report(path, number, "include", "area '%s' includes unknown area '%s' (mics/%s)" % (area, included, target))
            elif included not in allowed:
                report(path, number, "include",
                       "area '%s' may not include area '%s' (mics/%s); allowed: %s" %
                       (area, included, target, ", ".join(allowed) or "none"))


def slug(heading):
    """GitHub's anchor of a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(lines):
    anchors, seen, fenced = set(), {}, False
    for line in lines:
        if FENCE_RE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING_RE.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else "%s-%d" % (base, count))
    return anchors


def check_documents(root, files, report):
    anchor_cache = {}
    for path in sorted(files):
        if path in DOC_EXEMPT or not path.startswith(tuple(d + "/" for d in DOC_DIRS)):
            continue
        lines = read_lines(os.path.join(root, path))
        if lines is None:
            continue
        folder = os.path.dirname(path)
        for number, line in enumerate(lines, 1):
            for match in DOC_RE.finditer(line):
                name, anchor = match.group(1), match.group(2)
                if match.start() > 0 and line[match.start() - 1] == ":":
                    continue  # part of a URL (scheme://...): not a file of this repository
                candidates = [os.path.normpath(os.path.join(folder, name)).replace(os.sep, "/"),
                              os.path.normpath(name.lstrip("/")).replace(os.sep, "/")]
                target = next((c for c in candidates if c in files), None)
                if target is None:
                    report(path, number, "document", "names %s, which is not a file of the repository "
                           "(write what it says into docs/ and point there)" % name)
                    continue
                if anchor:
                    if target not in anchor_cache:
                        anchor_cache[target] = anchors_of(read_lines(os.path.join(root, target)) or [])
                    if anchor[1:] not in anchor_cache[target]:
                        report(path, number, "document", "names %s%s, but %s has no such heading" % (name, anchor, target))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
                        help="repository root (default: two folders above this script)")
    args = parser.parse_args()
    root = os.path.abspath(args.source_dir)
    if not os.path.isdir(os.path.join(root, "include", "mics")) or not os.path.isdir(os.path.join(root, "src")):
        print("check_layout: %s is not the mics source tree (no include/mics/ or src/)" % root, file=sys.stderr)
        return 2
    files = repository_files(root)

    violations = []

    def report(path, line, rule, detail):
        violations.append("%s:%d: %s: %s" % (path, line, rule, detail))

    check_includes(root, files, report)
    check_documents(root, files, report)
    for v in violations:
        print(v)
    if violations:
        print("check_layout: %d violation(s)" % len(violations))
        return 1
    print("check_layout: include rules and document references hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
