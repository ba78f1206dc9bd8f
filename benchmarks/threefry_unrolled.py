"""jaxgen's keys (`rng.THREEFRY`: JAX's threefry bits from an unrolled hash) against JAX's own
threefry keys: compile and run time of dropout masks, and of an experiment's initialisation
and train step, with whether the trained parameters are bit-identical.

python -m benchmarks.threefry_unrolled [--experiments ddpm_fashion_mnist] [--masks 1 4 16]
    [--steps 5] [--out FILE]

Each experiment runs in two processes (the keys are chosen when the trainer wraps its key
data), with an empty persistent compilation cache each, so both compiles are cold. Writes
benchmarks/results/threefry_unrolled_<device kind>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MASK_SHAPE = (128, 28, 28, 32)  # a dropout mask of ddpm_fashion_mnist's widest 28x28 block


def masks_row(impl, count: int) -> dict:
    import jax
    import jax.numpy as jnp

    def dropped(key, x):
        for i in range(count):
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 0.9, x.shape)
            x = jnp.where(keep, x / 0.9, 0.0)
        return x

    x = jnp.ones(MASK_SHAPE)
    key = jax.random.wrap_key_data(jax.random.key_data(jax.random.key(0)), impl=impl)
    lowered = jax.jit(dropped).lower(key, x)
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(key, x))
    start = time.perf_counter()
    for _ in range(5):
        out = compiled(key, x)
    jax.block_until_ready(out)
    return {"masks": count, "compile_seconds": compile_seconds,
            "run_ms": (time.perf_counter() - start) / 5 * 1000,
            "result": out}


def experiment_row(experiment: str, keys: str, steps: int) -> dict:
    """In this process: keys "jax" replaces jaxgen's key implementation by JAX's threefry."""
    import jax
    import numpy as np

    from benchmarks.init_compile import trainer_of
    from jaxgen.core import rng
    if keys == "jax":
        rng.THREEFRY = "threefry2x32"
    trainer = trainer_of(experiment)
    start = time.perf_counter()
    state = trainer.init_state()
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - start
    batch = trainer.global_batch(trainer.stream.batch_at(0))
    start = time.perf_counter()
    compiled, _ = trainer.compile_step(state, batch)
    compile_seconds = time.perf_counter() - start
    state, metrics = compiled(state, batch, 0)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        state, metrics = compiled(state, trainer.global_batch(trainer.stream.batch_at(step)),
                                  step)
    jax.block_until_ready((state, metrics))
    leaves = jax.tree.leaves(state.params)
    digest = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in leaves))
    return {"experiment": experiment, "keys": keys,
            "init_seconds": init_seconds, "compile_seconds": compile_seconds,
            "step_seconds": (time.perf_counter() - start) / steps,
            "params_sha256": digest.hexdigest()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=["ddpm_fashion_mnist"])
    p.add_argument("--masks", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", default="")
    p.add_argument("--row", nargs=2, metavar=("EXPERIMENT", "KEYS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.row:
        print(json.dumps(experiment_row(*args.row, args.steps)))
        return
    import numpy as np

    from benchmarks.train_step import environment, write_record
    from jaxgen.core import rng
    masks = []
    for count in args.masks:
        rows = {name: masks_row(impl, count)
                for name, impl in (("jax", "threefry2x32"), ("jaxgen", rng.THREEFRY))}
        identical = bool(np.array_equal(rows["jax"].pop("result"), rows["jaxgen"].pop("result")))
        masks.append({"masks": count, "identical": identical,
                      **{name: row for name, row in rows.items()}})
        print(f"{count} masks {MASK_SHAPE}: compile {rows['jax']['compile_seconds']:.2f} s -> "
              f"{rows['jaxgen']['compile_seconds']:.2f} s, run {rows['jax']['run_ms']:.0f} -> "
              f"{rows['jaxgen']['run_ms']:.0f} ms, identical: {identical}", flush=True)
    experiments = []
    for name in args.experiments:
        rows = {}
        for keys in ("jax", "jaxgen"):
            env = dict(os.environ,
                       JAXGEN_COMPILE_CACHE=tempfile.mkdtemp(prefix="jaxgen_xla_"))
            out = subprocess.run([sys.executable, "-m", "benchmarks.threefry_unrolled", "--row",
                                  name, keys, f"--steps={args.steps}"], cwd=ROOT, env=env,
                                 check=True, capture_output=True, text=True).stdout
            rows[keys] = json.loads(out.strip().splitlines()[-1])
        identical = rows["jax"]["params_sha256"] == rows["jaxgen"]["params_sha256"]
        experiments.append({"experiment": name, "identical_after_steps": identical, **rows})
        print(f"{name}: init {rows['jax']['init_seconds']:.1f} -> "
              f"{rows['jaxgen']['init_seconds']:.1f} s, step compile "
              f"{rows['jax']['compile_seconds']:.1f} -> {rows['jaxgen']['compile_seconds']:.1f} s,"
              f" step {rows['jax']['step_seconds']:.3f} -> {rows['jaxgen']['step_seconds']:.3f} "
              f"s, parameters after {args.steps + 1} steps identical: {identical}", flush=True)
    write_record({**environment(), "mask_shape": list(MASK_SHAPE), "masks": masks,
                  "experiments": experiments}, args.out, "threefry_unrolled", echo=False)


if __name__ == "__main__":
    main()
