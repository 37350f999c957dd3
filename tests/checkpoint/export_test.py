"""Export round trip.

llmc: exporting the step-20 checkpoint gives byte for byte the llm.c file that the trainer itself
writes at the end of the same run (train.save_final, gathered from the engine), and training from it
(model.init = llmc:FILE) logs the same first loss as training from the trainer's file.
safetensors: the file parses (8-byte header length, JSON, F32 tensors with contiguous, non-overlapping
offsets that cover the data buffer), has every Hugging Face GPT-2 name with HF's shapes (Conv1D weights
[in, out], wte cut to the real vocabulary), and its values are the llm.c file's (transposed where HF
transposes), and config.json beside it describes the model (GPT2Config). If the safetensors package is
installed, it must load the file too; tests/checkpoint/hf_load_test.py loads it with transformers."""
import json
import os
import struct

import ckpt_test
from ckpt_test import mics_test


def floats(blob, offset, count):
    return struct.unpack_from("<%df" % count, blob, offset)


def main():
    args = mics_test.parse_args()
    runner = mics_test.Runner(args)
    checks = mics_test.Checks()
    layout = ckpt_test.REFERENCE_LAYOUT

    runner.run_mpi(4, ckpt_test.train_argv(runner, "ref", "--checkpoint.every_steps=10", "--train.save_final=final.bin",
                                           *layout))
    step20 = os.path.join(ckpt_test.run_dir(runner, "ref"), "step_20")
    exported = os.path.join(runner.dir, "exported.bin")
    runner.run_serial(["export", step20, "--format", "llmc", exported])
    with open(exported, "rb") as f, open(os.path.join(runner.dir, "final.bin"), "rb") as g:
        checks.check(f.read() == g.read(), "exported llm.c file equals the trainer's final weights byte for byte")

    first_losses = []
    for name, path in (("from_export", exported), ("from_final", "final.bin")):
        runner.run_mpi(1, ckpt_test.train_argv(runner, name, "--train.steps=1", "--train.resume=never",
                                               "--model.init=llmc:" + path, "--train.micro_batch=4",
                                               "--train.grad_accum=4"))
        first_losses.append(runner.losses(name)[0])
    checks.check(first_losses[0] == first_losses[1], "same loss from both files: %s" % first_losses)

    # safetensors
    st_path = os.path.join(runner.dir, "model.safetensors")
    runner.run_serial(["export", step20, "--format", "safetensors", st_path])
    with open(st_path, "rb") as f:
        blob = f.read()
    (header_length,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + header_length].decode("utf-8"))
    data_start = 8 + header_length
    checks.check(data_start % 8 == 0, "data buffer 8-byte aligned")
    meta = header.pop("__metadata__", {})
    checks.check(meta.get("step") == "20", "metadata carries the step: %s" % meta)

    llmc_header, weights = ckpt_test.read_llmc(exported)
    maxT, V, L, NH, C, Vp = llmc_header[2:8]
    expected = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [maxT, C],
                "transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C]}
    for i in range(L):
        h = "transformer.h.%d." % i
        expected.update({h + "ln_1.weight": [C], h + "ln_1.bias": [C], h + "attn.c_attn.weight": [C, 3 * C],
                         h + "attn.c_attn.bias": [3 * C], h + "attn.c_proj.weight": [C, C], h + "attn.c_proj.bias": [C],
                         h + "ln_2.weight": [C], h + "ln_2.bias": [C], h + "mlp.c_fc.weight": [C, 4 * C],
                         h + "mlp.c_fc.bias": [4 * C], h + "mlp.c_proj.weight": [4 * C, C], h + "mlp.c_proj.bias": [C]})
    checks.check(set(header) == set(expected), "tensor names: missing %s, extra %s" %
                 (sorted(set(expected) - set(header)), sorted(set(header) - set(expected))))
    spans = []
    for name, info in header.items():
        checks.check(info["dtype"] == "F32", name + " is F32")
        checks.check(info["shape"] == expected.get(name), "%s shape %s" % (name, info["shape"]))
        begin, end = info["data_offsets"]
        count = 1
        for d in info["shape"]:
            count *= d
        checks.check(end - begin == 4 * count, name + " offsets match its shape")
        spans.append((begin, end))
    spans.sort()
    contiguous = spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    checks.check(contiguous and spans[-1][1] == len(blob) - data_start, "tensors tile the data buffer exactly")

    def tensor(name):
        begin, end = header[name]["data_offsets"]
        return floats(blob, data_start + begin, (end - begin) // 4)

    # llm.c order: wte (Vp, C), wpe (maxT, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C), ...
    wte = floats(weights, 0, Vp * C)
    checks.check(tensor("transformer.wte.weight") == wte[:V * C], "wte values (real vocabulary rows)")
    qkvw_at = 4 * (Vp * C + maxT * C + 2 * L * C)
    qkvw0 = floats(weights, qkvw_at, 3 * C * C)  # layer 0, (3C, C)
    hf = tensor("transformer.h.0.attn.c_attn.weight")  # (C, 3C)
    checks.check(all(hf[i * 3 * C + o] == qkvw0[o * C + i] for i in range(C) for o in range(3 * C)),
                 "c_attn.weight is the transpose of llm.c's qkvw")
    # config.json beside the safetensors: the GPT2Config from_pretrained(directory) needs
    with open(os.path.join(runner.dir, "config.json")) as f:
        config = json.load(f)
    want = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": V, "n_positions": maxT,
            "n_embd": C, "n_layer": L, "n_head": NH, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True}
    checks.check(all(config.get(k) == v for k, v in want.items()),
                 "config.json: %s" % {k: config.get(k) for k in want})
    try:
        from safetensors import safe_open  # noqa: F401
    except ImportError:
        print("safetensors package not installed: skipping the library load")
    else:
        with safe_open(st_path, framework="numpy") as f:
            checks.check(set(f.keys()) == set(expected), "safetensors library lists every tensor")
            loaded = f.get_tensor("transformer.h.0.attn.c_attn.weight")
            checks.check(list(loaded.shape) == [C, 3 * C] and tuple(float(x) for x in loaded.ravel()) == hf,
                         "safetensors library loads c_attn.weight with HF's shape and the same values")
    checks.finish()


if __name__ == "__main__":
    main()
