"""Train-step throughput, compile time, peak memory and achieved FLOP/s per experiment.

python benchmarks/train_step.py [--experiments vae_digits vae_fashion_mnist ...] [--steps 50]
Writes benchmarks/results/train_step_<platform>.json. The FLOP count of a step is
XLA's own cost analysis of the compiled step; the machine's peak is a measured
float32 matmul, so the ratio says how much of reachable compute a step uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import jax
import jax.numpy as jnp

from jaxgen import cli, config as config_lib, runs
from jaxgen.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 matmul FLOP/s: the reachable peak of this machine."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a)
    out.block_until_ready()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def peak_memory_bytes() -> tuple[int, str]:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    # CPU: the process's peak resident set (kilobytes on Linux), a host-side upper bound.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process max RSS"


def benchmark(experiment: str, steps: int, overrides: list[str]) -> dict:
    flags, _ = cli.parse(cli.parser(""), [f"--config=experiments/{experiment}.py",
                                          "--workdir=/nonexistent"])
    config, splits, family = runs.prepare(flags, overrides)
    trainer = Trainer(config, family, splits)
    state = trainer.init_state()
    batch = trainer.global_batch(trainer.stream.batch_at(0))
    start = time.perf_counter()
    compiled = trainer.step_fn.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops_per_step = float(cost.get("flops", float("nan")))
    for _ in range(3):  # warm-up
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    batches = [trainer.global_batch(trainer.stream.batch_at(s)) for s in range(1, steps + 1)]
    start = time.perf_counter()
    for b in batches:
        state, metrics = compiled(state, b)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - start
    memory, memory_kind = peak_memory_bytes()
    step_seconds = seconds / steps
    return {
        "experiment": experiment,
        "overrides": overrides,
        "global_batch": config.train.batch_size,
        "image_shape": list(splits["train"].images.shape[1:]),
        "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "compile_seconds": compile_seconds,
        "step_seconds": step_seconds,
        "images_per_second": config.train.batch_size / step_seconds,
        "flops_per_step": flops_per_step,
        "achieved_flops_per_second": flops_per_step / step_seconds,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+",
                   default=["vae_digits", "vae_fashion_mnist", "ae_fashion_mnist"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--override", action="append", default=[], help="KEY=VALUE for every config")
    p.add_argument("--out", default="")
    args = p.parse_args()
    os.chdir(ROOT)
    peak = matmul_peak_flops()
    results = []
    for name in args.experiments:
        try:
            row = benchmark(name, args.steps, args.override)
        except (config_lib.ConfigError, RuntimeError) as e:
            print(f"{name}: skipped: {e}", file=sys.stderr)
            continue
        row["fraction_of_matmul_peak"] = row["achieved_flops_per_second"] / peak
        results.append(row)
        print(f"{name}: {row['images_per_second']:.0f} images/s, compile "
              f"{row['compile_seconds']:.2f} s, {row['achieved_flops_per_second'] / 1e9:.1f} "
              f"GFLOP/s ({100 * row['fraction_of_matmul_peak']:.1f}% of matmul peak), peak memory "
              f"{row['peak_memory_bytes'] / 2**20:.0f} MiB ({row['peak_memory_kind']})")
    device = jax.devices()[0]
    record = {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "num_devices": jax.device_count(),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "jax": jax.__version__,
        "matmul_peak_flops_per_second": peak,
        "steps_timed": args.steps,
        "results": results,
    }
    out = args.out or os.path.join(ROOT, "benchmarks", "results",
                                   f"train_step_{device.platform}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    print(out)


if __name__ == "__main__":
    main()
