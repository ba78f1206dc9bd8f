"""A frozen CLIP text encoder of Stable Diffusion's size, read by jaxgen (`jaxgen/text/clip.py`):
read time, lowering and compile time of its forward pass, the size of the lowered program,
peak host memory, and the largest difference from transformers' CLIPTextModel on the same
tokens.

python -m benchmarks.clip_text_encoder --make DIR   # needs torch and transformers: a random
    # CLIPTextModel with CLIP ViT-L/14's text settings (123M parameters, Stable Diffusion v1's
    # encoder), saved in DIR/text_encoder, with 4 random prompts of 77 tokens and its
    # last_hidden_state in DIR/reference.safetensors
python -m benchmarks.clip_text_encoder --folder DIR  # jaxgen alone; no PyTorch
JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS=1 python -m benchmarks.clip_text_encoder --folder DIR
    # the same, with JAX passing closed-over arrays as arguments instead of embedding them

Writes benchmarks/results/clip_text_encoder_<platform>.json (one row per setting of
JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS; a later run replaces the row of its own setting).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = "reference.safetensors"
CLIP_L_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                   num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                   hidden_act="quick_gelu")


def make(folder: str) -> None:
    import numpy as np
    import safetensors.numpy
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)).eval()
    model.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    ids = torch.randint(0, CLIP_L_TEXT["vocab_size"] - 2, (4, 77))
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
    safetensors.numpy.save_file({"input_ids": ids.numpy().astype(np.int32),
                                 "last_hidden_state": hidden.numpy()},
                                os.path.join(folder, REFERENCE))
    print(f"wrote {folder}: {sum(p.numel() for p in model.parameters()):,} parameters")


def measure(folder: str) -> dict:
    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpy as np
    from safetensors.numpy import load_file

    from jaxgen.text.clip import ClipTextEncoder

    t1 = time.perf_counter()
    encoder = ClipTextEncoder(folder)
    t2 = time.perf_counter()
    reference = load_file(os.path.join(folder, REFERENCE))
    tokens = jnp.asarray(reference["input_ids"] + 1)  # jaxgen's ids: CLIP's + 1
    forward = jax.jit(lambda t: encoder.encode(t)[0])
    lowered = forward.lower(tokens)
    t3 = time.perf_counter()
    compiled = lowered.compile()
    t4 = time.perf_counter()
    out = np.asarray(compiled(tokens).block_until_ready())
    t5 = time.perf_counter()
    error = np.abs(out - reference["last_hidden_state"])
    return {
        "device": jax.devices()[0].device_kind, "jax": jax.__version__,
        "simplified_jaxpr_constants": bool(jax.config.jax_use_simplified_jaxpr_constants),
        "parameters": int(sum(x.size for x in jax.tree.leaves(encoder.params))),
        "import_seconds": round(t1 - t0, 2), "read_seconds": round(t2 - t1, 2),
        "lower_seconds": round(t3 - t2, 2), "compile_seconds": round(t4 - t3, 2),
        "first_run_seconds": round(t5 - t4, 3),
        "lowered_program_mb": round(len(lowered.as_text()) / 1e6, 2),
        "peak_host_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "max_abs_difference_from_transformers": float(error.max()),
        "max_abs_hidden_state": float(np.abs(reference["last_hidden_state"]).max()),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--make", help="write a random CLIP ViT-L/14 text encoder here (transformers)")
    p.add_argument("--folder", help="measure jaxgen on this folder (written by --make)")
    flags = p.parse_args()
    if flags.make:
        make(flags.make)
    if flags.folder:
        row = measure(flags.folder)
        print(json.dumps(row, indent=1))
        device = row["device"].lower().replace(" ", "_")
        file = os.path.join(ROOT, "benchmarks", "results", f"clip_text_encoder_{device}.json")
        rows = []
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as f:
                rows = [r for r in json.load(f)
                        if r["simplified_jaxpr_constants"] != row["simplified_jaxpr_constants"]]
        with open(file, "w", encoding="utf-8") as f:
            json.dump(sorted(rows + [row], key=lambda r: r["simplified_jaxpr_constants"]), f,
                      indent=1)
        print(f"wrote {file}")


if __name__ == "__main__":
    main()
