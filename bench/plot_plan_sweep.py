#!/usr/bin/env python3
"""Draws `mics plan --sweep-nodes ... --plot FILE.png`: predicted TFLOPS per GPU and weak-scaling
efficiency of the best configuration of each strategy against the number of GPUs.
usage: plot_plan_sweep.py SWEEP.json OUT.png (the JSON that `mics plan --sweep-nodes --json` prints)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for strategy in ("ddp", "zero3", "mics"):
        pts = [p for p in data["points"] if p["strategy"] == strategy]
        if not pts:
            continue
        gpus = [p["gpus"] for p in pts]
        ax1.plot(gpus, [p["prediction"]["model_tflops_per_gpu"] for p in pts], "o-", label=strategy)
        ax2.plot(gpus, [100 * p["weak_scaling"] for p in pts], "o-", label=strategy)
    ax1.set_xlabel("GPUs")
    ax1.set_ylabel("predicted TFLOPS per GPU")
    ax2.set_xlabel("GPUs")
    ax2.set_ylabel("weak-scaling efficiency (%)")
    ax1.set_ylim(bottom=0)
    ax2.set_ylim(0, 105)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mics plan: %s on %s" % (data["model"], data["hardware"]))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()
