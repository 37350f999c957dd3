#!/usr/bin/env python3
"""Checkpoint write rate and training stall of `mics train` runs, against the disk's sequential rate.

    python3 bench/checkpoint/summarize.py --dd-bytes B --dd-seconds S RUN [RUN ...] [--json FILE]

RUN is RANKS:LOG:METRICS:CKPT -- the rank count, the run's console log (rank 0's lines, with
timestamps), its metrics.jsonl and either its checkpoint folder (<checkpoint.dir>/<run.name>) or the sizes
of its checkpoints saved before they were removed:

    python3 bench/checkpoint/summarize.py --save-sizes CKPT_RUN_DIR SIZES.json

bench/checkpoint/run.sh runs the trainings and calls this; it can also be run again on the files a run left.

Per checkpoint (step N):
  bytes      the checkpoint's size: the `bytes` of its metrics record when the binary writes one, else the
             sum of the sizes of the files in step_N/ (every file: a single state.h5 or one file per rank
             plus an index)
  files      files in step_N/ (how many writers wrote it)
  write_s    seconds the write took: the metrics record's `write_s` when present (the log line
             `checkpoint step N: B bytes, stall S s, written in W s (M MB/s)` gives the same), else the
             time between step N's progress line in the log and the line `checkpoint written: .../step_N`
             (log timestamps, millisecond resolution; needs train.log_every = 1)
  MB/s       bytes / write_s / 1e6 (decimal MB, as dd prints)
  %dd        MB/s as a percentage of the dd rate measured in the same run on the same file system
  stall_s    the time training stood still for the checkpoint: the metrics record's `stall_s` when present;
             else the wall time between the metrics records of steps N and N+1 minus the time step N+1 itself
             took (`time.total`), i.e. what ran between two steps, which for a synchronous writer is the
             write; for the last step (no step follows) the write time
  source     record (the binary's own metrics record) or log (timestamps)

The table has one row per rank count: the number of checkpoints, their bytes and files, and the median
write_s, MB/s, %dd and stall_s over them (the min-max of MB/s beside it); the rows of every checkpoint follow.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import sys

STEP_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?) \[\w+\] (?:r\d+: )?step (\d+)/\d+ \|")
WRITTEN_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?) \[\w+\] (?:r\d+: )?checkpoint written: (.*)$")
NUMBER = r"([-+0-9.eE]+|nan|inf)"
NEW_LINE = re.compile(r"checkpoint step (\d+): (\d+) bytes, stall " + NUMBER + r" s, written in " + NUMBER +
                      r" s \(" + NUMBER + r" MB/s\)")
STEP_DIR = re.compile(r"step_(\d+)")


def parse_time(text):
    """ISO timestamp (local time in the log, UTC with a Z in the metrics) to seconds; only differences are used."""
    text = text.rstrip("Z")
    return datetime.datetime.fromisoformat(text).timestamp()


def read_log(path):
    """{step: time of its progress line}, {step: time of 'checkpoint written'}, {step: the new log line's numbers}."""
    step_at, written_at, reported = {}, {}, {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = STEP_LINE.match(line)
            if m:
                step_at.setdefault(int(m.group(2)), parse_time(m.group(1)))
                continue
            m = WRITTEN_LINE.match(line)
            if m:
                d = STEP_DIR.search(os.path.basename(m.group(2).rstrip("/")))
                if d:
                    written_at[int(d.group(1))] = parse_time(m.group(1))
                continue
            m = NEW_LINE.search(line)
            if m:
                reported[int(m.group(1))] = {"bytes": int(m.group(2)), "stall_s": float(m.group(3)),
                                             "write_s": float(m.group(4)), "mb_per_s": float(m.group(5))}
    return step_at, written_at, reported


def read_metrics(path):
    """{step: step record}, {step: checkpoint object}."""
    steps, checkpoints = {}, {}
    if not os.path.exists(path):
        return steps, checkpoints
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(r, dict) or "step" not in r:
                continue
            if isinstance(r.get("checkpoint"), dict):
                checkpoints[int(r["step"])] = r["checkpoint"]
            if "time" in r and "timestamp" in r:
                steps[int(r["step"])] = r
    return steps, checkpoints


def dir_bytes(path):
    """(bytes, files) of every regular file under path."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
                files += 1
    return total, files


def checkpoint_sizes(ckpt):
    """{step: (bytes, files)} from a checkpoint run folder, or from a file --save-sizes wrote."""
    if os.path.isfile(ckpt):
        with open(ckpt) as f:
            return {int(k): tuple(v) for k, v in json.load(f).items()}
    return {n: dir_bytes(path) for n, path in committed_steps(ckpt).items()}


def committed_steps(ckpt_dir):
    out = {}
    if os.path.isdir(ckpt_dir):
        for name in os.listdir(ckpt_dir):
            m = re.fullmatch(r"step_(\d+)", name)
            if m and os.path.isdir(os.path.join(ckpt_dir, name)):
                out[int(m.group(1))] = os.path.join(ckpt_dir, name)
    return out


def summarize_run(ranks, log, metrics, ckpt_dir, dd_mb_s):
    step_at, written_at, reported = read_log(log)
    steps, records = read_metrics(metrics)
    on_disk = checkpoint_sizes(ckpt_dir)
    rows = []
    for n in sorted(set(records) | set(reported) | set(written_at) | set(on_disk)):
        disk_bytes, files = on_disk.get(n, (0, 0))
        rec = records.get(n) or reported.get(n)
        row = {"ranks": ranks, "step": n, "files": files}
        if rec is not None:
            row.update(source="record" if n in records else "logline", bytes=int(rec.get("bytes") or disk_bytes),
                       write_s=float(rec["write_s"]), stall_s=float(rec["stall_s"]))
        else:
            if n not in step_at or n not in written_at:
                print(f"summarize: {ranks} ranks, step {n}: no progress line or no 'checkpoint written' line "
                      f"in {log}: skipped", file=sys.stderr)
                continue
            write_s = written_at[n] - step_at[n]
            if n in steps and n + 1 in steps:
                gap = parse_time(steps[n + 1]["timestamp"]) - parse_time(steps[n]["timestamp"])
                stall_s = gap - float(steps[n + 1]["time"]["total"])
            else:
                stall_s = write_s  # the last step: the synchronous write is all that follows it
            row.update(source="log", bytes=disk_bytes, write_s=write_s, stall_s=stall_s)
        row["mb_per_s"] = row["bytes"] / row["write_s"] / 1e6 if row["write_s"] > 0 else float("nan")
        row["pct_dd"] = 100.0 * row["mb_per_s"] / dd_mb_s if dd_mb_s > 0 else float("nan")
        rows.append(row)
    return rows


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--save-sizes":
        with open(sys.argv[3], "w") as f:
            json.dump({str(n): list(v) for n, v in sorted(checkpoint_sizes(sys.argv[2]).items())}, f)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RANKS:LOG:METRICS:CKPT_RUN_DIR")
    ap.add_argument("--dd-bytes", type=float, required=True, help="bytes dd wrote")
    ap.add_argument("--dd-seconds", type=float, required=True, help="seconds dd took")
    ap.add_argument("--dd-note", default="", help="how dd was run, for the header")
    ap.add_argument("--json", help="also write the table and every checkpoint's row here")
    args = ap.parse_args()

    dd_mb_s = args.dd_bytes / args.dd_seconds / 1e6 if args.dd_seconds > 0 else float("nan")
    print(f"# disk: dd {args.dd_bytes / 1e6:.0f} MB in {args.dd_seconds:.2f} s = {dd_mb_s:.1f} MB/s"
          + (f" ({args.dd_note})" if args.dd_note else ""))
    all_rows, table = [], []
    for spec in args.runs:
        ranks, log, metrics, ckpt = spec.split(":", 3)
        rows = summarize_run(int(ranks), log, metrics, ckpt, dd_mb_s)
        all_rows += rows
        if not rows:
            table.append({"ranks": int(ranks), "checkpoints": 0})
            continue
        rates = [r["mb_per_s"] for r in rows]
        table.append({"ranks": int(ranks), "checkpoints": len(rows), "bytes": median([r["bytes"] for r in rows]),
                      "files": median([r["files"] for r in rows]), "write_s": median([r["write_s"] for r in rows]),
                      "mb_per_s": median(rates), "mb_per_s_min": min(rates), "mb_per_s_max": max(rates),
                      "pct_dd": median([r["pct_dd"] for r in rows]), "stall_s": median([r["stall_s"] for r in rows]),
                      "source": ",".join(sorted({r["source"] for r in rows}))})

    print("#")
    print("# median over the checkpoints of each run")
    print(f"# {'ranks':>5} {'ckpts':>5} {'bytes':>13} {'files':>5} {'write(s)':>9} {'MB/s':>8} "
          f"{'min-max MB/s':>15} {'%dd':>6} {'stall(s)':>9}  source")
    for t in table:
        if not t["checkpoints"]:
            print(f"  {t['ranks']:>5} {0:>5}  no checkpoint found")
            continue
        span = f"{t['mb_per_s_min']:.0f}-{t['mb_per_s_max']:.0f}"
        print(f"  {t['ranks']:>5} {t['checkpoints']:>5} {t['bytes']:>13.0f} {t['files']:>5.0f} {t['write_s']:>9.2f} "
              f"{t['mb_per_s']:>8.1f} {span:>15} {t['pct_dd']:>5.1f}% {t['stall_s']:>9.2f}  {t['source']}")
    print("#")
    print("# every checkpoint")
    print(f"# {'ranks':>5} {'step':>5} {'bytes':>13} {'files':>5} {'write(s)':>9} {'MB/s':>8} {'%dd':>6} "
          f"{'stall(s)':>9}  source")
    for r in all_rows:
        print(f"  {r['ranks']:>5} {r['step']:>5} {r['bytes']:>13d} {r['files']:>5d} {r['write_s']:>9.2f} "
              f"{r['mb_per_s']:>8.1f} {r['pct_dd']:>5.1f}% {r['stall_s']:>9.2f}  {r['source']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "checkpoint", "dd": {"bytes": args.dd_bytes, "seconds": args.dd_seconds,
                                                         "mb_per_s": dd_mb_s, "note": args.dd_note},
                       "table": table, "checkpoints": all_rows}, f, indent=1)
    missing = [t["ranks"] for t in table if not t["checkpoints"]]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
