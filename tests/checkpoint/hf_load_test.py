"""The safetensors export loads into Hugging Face transformers as it is: GPT2LMHeadModel.from_pretrained
on the export's directory (model.safetensors + config.json, nothing hand-made), with no missing or
unexpected weights, gives the validation loss mics logged for the same weights and sequences.

Needs PyTorch and transformers: Debian 12's python3-torch (1.13) with transformers 4.44.2 from PyPI
(pip install --break-system-packages transformers==4.44.2). The test looks for them in this Python, then
in /usr/bin/python3, and is SKIPPED (exit 77) when neither has both: `make test` does not download them.

The validation sequences are mics's (data/sampler.hpp): sequence j of count starts at position
j * P // count of the P start positions of the val split (one shard here), T + 1 tokens."""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
import mics_test  # noqa: E402

PINNED = "4.44.2"
T = 32
SEQUENCES = 8  # val_batches 2 x micro_batch 4 on one rank

HF_SCRIPT = r'''
import json, struct, sys
import torch
import transformers
from transformers import GPT2LMHeadModel
model_dir, shard, T, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, info = GPT2LMHeadModel.from_pretrained(model_dir, output_loading_info=True)
model.eval()
with open(shard, "rb") as f:
    blob = f.read()
header = struct.unpack_from("<256i", blob, 0)
width = 2 if header[0] == 20240520 else 4
n = (len(blob) - 1024) // width
tokens = struct.unpack_from("<%d%s" % (n, "H" if width == 2 else "I"), blob, 1024)
P = n - T
starts = [j * P // count for j in range(count)]
batch = torch.tensor([tokens[s:s + T + 1] for s in starts], dtype=torch.long)
with torch.no_grad():
    logits = model(batch[:, :-1]).logits.double()
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
print(json.dumps({"loss": loss.item(), "missing": info["missing_keys"], "unexpected": info["unexpected_keys"],
                  "transformers": transformers.__version__, "torch": torch.__version__}))
'''


def python_with_transformers():
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run(
                [python, "-c", "import torch, transformers"], capture_output=True).returncode == 0:
            return python
    return None


def main():
    args = mics_test.parse_args()
    python = python_with_transformers()
    if python is None:
        print("SKIPPED: no Python with torch and transformers (Debian: apt-get install python3-torch; "
              "pip install --break-system-packages transformers==%s)" % PINNED)
        sys.exit(77)
    runner = mics_test.Runner(args, tokens=60000)
    checks = mics_test.Checks()
    runner.run_serial(["train", "--deck", runner.deck("tiny.ini"), "--run.name=hf", "--train.steps=30",
                       "--model.seq_len=%d" % T, "--train.micro_batch=4", "--train.val_every=30",
                       "--train.val_batches=2", "--checkpoint.dir=ckpt"])
    val = [m["val_loss"] for m in runner.metrics("hf") if "val_loss" in m]
    out_dir = os.path.join(runner.dir, "hf_model")
    runner.run_serial(["export", os.path.join(runner.dir, "ckpt", "hf", "step_30"), "--format", "safetensors",
                       os.path.join(out_dir, "model.safetensors")])
    checks.check(os.path.exists(os.path.join(out_dir, "config.json")), "config.json written beside the export")
    shard = sorted(f for f in os.listdir(os.path.join(runner.dir, "data", "synth")) if f.startswith("val_"))
    checks.check(len(shard) == 1, "one validation shard: %s" % shard)
    proc = subprocess.run([python, "-c", HF_SCRIPT, out_dir, os.path.join(runner.dir, "data", "synth", shard[0]),
                           str(T), str(SEQUENCES)], capture_output=True, text=True, timeout=300)
    if not checks.check(proc.returncode == 0, "transformers load: %s" % proc.stderr[-2000:]):
        checks.finish()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print("transformers %s, torch %s: loss %.7f, mics val loss %.7f" %
          (result["transformers"], result["torch"], result["loss"], val[-1]))
    if result["transformers"] != PINNED:
        print("note: transformers %s, not the pinned %s" % (result["transformers"], PINNED))
    checks.check(not result["missing"] and not result["unexpected"],
                 "missing %s, unexpected %s" % (result["missing"], result["unexpected"]))
    checks.check(abs(result["loss"] - val[-1]) <= 1e-5 * abs(val[-1]),
                 "transformers loss %.7f vs mics %.7f" % (result["loss"], val[-1]))
    checks.finish()


if __name__ == "__main__":
    main()
