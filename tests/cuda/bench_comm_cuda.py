"""`mics bench comm --device cuda` under mpirun: the collective tables on GPU buffers, moved by the
transport training uses (NCCL with a GPU per rank; host-staged MPI when the 2 ranks share one GPU), every
row verified (#wrong 0). Exits 77 (skipped) without a visible GPU."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402


def gpu_count():
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU ")) if listed.returncode == 0 else 0


def main():
    args = mics_test.parse_args()
    gpus = gpu_count()
    if gpus == 0:
        print("no GPU visible: skipped")
        sys.exit(77)
    checks = mics_test.Checks()
    cmd = [args.mpiexec, "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", "-np", "2", args.mics,
           "bench", "comm", "--device", "cuda", "-b", "1K", "-e", "4M", "-f", "4", "-n", "5", "-w", "2",
           "--topology.ranks_per_node=2", "--parallel.partition_size=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    text = proc.stdout
    checks.check(proc.returncode == 0, "rc %d:\n%s\n%s" % (proc.returncode, text[-2000:], proc.stderr[-2000:]))
    transport = "nccl" if gpus >= 2 else "staged"
    checks.check("device cuda (%s)" % transport in text, "header lacks 'device cuda (%s)':\n%s" % (transport, text[:600]))
    checks.check("busbw" in text and "#wrong" in text and "Avg bus bandwidth" in text, "bench table:\n" + text[:800])
    rows = [line.split() for line in text.splitlines() if re.match(r"\s*\d+\s+\d+\s+float", line)]
    checks.check(len(rows) >= 3 * 4, "too few rows (%d):\n%s" % (len(rows), text))
    checks.check(all(r[-1] == "0" for r in rows), "rows with wrong results:\n" + text)
    checks.check(all(float(r[6]) > 0 for r in rows), "a row without bandwidth:\n" + text)
    checks.check("Out of bounds values : 0 OK" in text, "summary:\n" + text[-400:])
    checks.finish()


if __name__ == "__main__":
    main()
