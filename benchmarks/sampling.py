"""Sampling time: N images with DDPM (all T steps) and DDIM (50 steps) for diffusion
experiments, PixelCNN++'s fast and reference samplers (the same images; the reference makes
H x W full network passes), the family's own sampler for the others.

python -m benchmarks.sampling [--experiments ddpm_digits ddpm_fashion_mnist pixelcnn_digits]
    [--samplers ddpm ddim50 fast reference] [--num 1000] [--batch 500] [--override KEY=VALUE ...]
Untrained (initialised) parameters: the cost of a sampler does not depend on the weights.
Compile time is measured separately from the timed runs. Writes
benchmarks/results/sampling_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib, flops
from jaxgen.diffusion import samplers
from jaxgen.training.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLERS = {"ddpm": ["sample.sampler=ddpm"], "ddim50": ["sample.sampler=ddim", "sample.steps=50"],
            "fast": ["sample.sampler=fast"], "reference": ["sample.sampler=reference"],
            "native": []}
FAMILY_SAMPLERS = {"diffusion": ("ddpm", "ddim50"), "latent_diffusion": ("ddpm", "ddim50"),
                   "pixelcnn": ("fast", "reference")}


def benchmark(experiment: str, sampler: str, num: int, batch: int, overrides: list[str]):
    flags, _ = cli.parse(cli.parser(""), [f"--config=experiments/{experiment}.py",
                                          "--workdir=/nonexistent"])
    config, splits, family = cli.prepare(flags, [*overrides, *SAMPLERS[sampler]])
    trainer = Trainer(config, family, splits)
    state = trainer.init_state()
    rng = jax.random.key_data(jax.random.key(0))
    start = time.perf_counter()
    compiled = trainer.sample_fn.lower(state, rng, batch).compile()
    compile_seconds = time.perf_counter() - start
    batches = -(-num // batch)
    start = time.perf_counter()
    for b in range(batches):
        out = compiled(state, jax.random.key_data(jax.random.fold_in(jax.random.key(0), b)))
    jax.block_until_ready(out)
    seconds = time.perf_counter() - start
    # Convolution and matmul FLOPs of one batch, counted from the sampler's jaxpr (loops with
    # static bounds are scans: counted times their length).
    counted = flops.count(lambda s, r: family.sample(s, r, batch), state, jax.random.key(0))
    if config.family in ("diffusion", "latent_diffusion"):
        passes = len(samplers.timestep_pairs(config.sample.sampler, config.model.num_timesteps,
                                             config.sample.steps))
    elif config.family == "pixelcnn":
        passes = family.data.image_shape[0] * family.data.image_shape[1]
    else:
        passes = 1
    return {"experiment": experiment, "sampler": sampler, "overrides": overrides,
            "network_passes_per_image": passes if sampler != "fast" else None,
            "gflop_per_image": counted["total"] / batch / 1e9,
            "num_images": batches * batch, "batch": batch, "compile_seconds": compile_seconds,
            "seconds": seconds, "images_per_second": batches * batch / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=["ddpm_digits"])
    p.add_argument("--samplers", nargs="+", default=["ddpm", "ddim50", "fast", "reference"],
                   help="those an experiment's family has are run (FAMILY_SAMPLERS); a family "
                        "with none uses its own ('native')")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--override", action="append", default=[])
    p.add_argument("--out", default="")
    args = p.parse_args()
    os.chdir(ROOT)
    results = []
    for experiment in args.experiments:
        family = config_lib.load(f"experiments/{experiment}.py").family
        known = FAMILY_SAMPLERS.get(family)
        for sampler in [s for s in args.samplers if s in known] if known else ["native"]:
            row = benchmark(experiment, sampler, args.num, args.batch, args.override)
            results.append(row)
            print(json.dumps(row))
    device = jax.devices()[0]
    out = args.out or os.path.join(ROOT, "benchmarks", "results",
                                   f"sampling_{device.platform}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
                   "num_devices": jax.device_count(), "jax": jax.__version__,
                   "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
                   "results": results}, f, indent=2)
    print(out)


if __name__ == "__main__":
    main()
