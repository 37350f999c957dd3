#!/usr/bin/env python3
"""Plots of one or more training runs, overlaid: loss and validation loss, tokens/s, the step-time split
and the bytes each group kind sends per step. Reads <RUN_DIR>/metrics.jsonl (run.dir/run.name) or a
metrics.jsonl given directly; needs matplotlib (Debian: python3-matplotlib).

usage: bench/plot_runs.py RUN_DIR [RUN_DIR ...] -o FILE.png [--title TEXT]"""
import argparse
import json
import os
import sys

TIME_PARTS = ["compute", "gather_wait", "reduce_scatter", "replica_all_reduce", "optimizer"]


def load(path):
    metrics = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    steps, vals = [], []
    with open(metrics) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if "loss" in record:
                steps.append(record)
            elif "val_loss" in record:
                vals.append(record)
    if not steps:
        raise SystemExit("plot_runs: no step records in " + metrics)
    label = os.path.basename(os.path.normpath(path if os.path.isdir(path) else os.path.dirname(path)))
    return label, steps, vals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (holding metrics.jsonl) or metrics files")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_runs: matplotlib is missing (Debian: apt-get install python3-matplotlib)")

    runs = [load(path) for path in args.runs]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax_loss, ax_tok, ax_time, ax_bytes = axes[0][0], axes[0][1], axes[1][0], axes[1][1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    for i, (label, steps, vals) in enumerate(runs):
        color = colors[i % len(colors)]
        x = [r["step"] for r in steps]
        ax_loss.plot(x, [r["loss"] for r in steps], color=color, lw=1, label=label + " train")
        if vals:
            ax_loss.plot([v["step"] for v in vals], [v["val_loss"] for v in vals], "o--", color=color, ms=4,
                         label=label + " val")
        ax_tok.plot(x, [r["tokens_per_s"] for r in steps], color=color, lw=1, label=label)
    ax_loss.set(title="loss", xlabel="step", ylabel="nats / token")
    ax_loss.legend(fontsize=8)
    ax_tok.set(title="throughput", xlabel="step", ylabel="tokens / s")
    ax_tok.legend(fontsize=8)

    # Step-time split: the median step of each run (the first steps warm up), one stacked bar per run.
    labels = [label for label, _, _ in runs]
    bottoms = [0.0] * len(runs)
    for j, part in enumerate(TIME_PARTS):
        heights = []
        for _, steps, _ in runs:
            values = sorted(r["time"].get(part, 0.0) * 1e3 for r in steps)
            heights.append(values[len(values) // 2])
        ax_time.bar(labels, heights, bottom=bottoms, label=part, color=colors[j % len(colors)])
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax_time.set(title="step time split (median step)", ylabel="ms")
    ax_time.legend(fontsize=8)

    # Bytes sent per optimizer step by group kind (rank 0, last step), grouped bars per run.
    kinds = sorted({k for _, steps, _ in runs for k, t in steps[-1]["traffic"].items()
                    if t["participants"] > 1 and t["collectives"] > 0 and k != "world"})
    width = 0.8 / max(1, len(runs))
    for i, (label, steps, _) in enumerate(runs):
        traffic = steps[-1]["traffic"]
        values = [traffic.get(k, {}).get("bytes_sent", 0) / 1e6 for k in kinds]
        ax_bytes.bar([k + i * width for k in range(len(kinds))], values, width=width, label=label,
                     color=colors[i % len(colors)])
    ax_bytes.set_xticks([k + width * (len(runs) - 1) / 2 for k in range(len(kinds))])
    ax_bytes.set_xticklabels(kinds or ["(one rank: no traffic)"])
    ax_bytes.set(title="bytes sent per step by group kind (rank 0)", ylabel="MB")
    ax_bytes.legend(fontsize=8)

    last = runs[0][1][-1]
    subtitle = ""
    if "mfu" in last:
        subtitle = " | %s: MFU %.1f%% at the last step" % (runs[0][0], 100 * last["mfu"])
    fig.suptitle((args.title or "mics: " + ", ".join(labels)) + subtitle)
    fig.tight_layout()
    out_dir = os.path.dirname(args.output)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print("plot written to " + args.output)


if __name__ == "__main__":
    main()
