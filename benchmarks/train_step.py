"""Train-step throughput, FLOPs, MFU, compile time (cold and warm) and peak memory.

python -m benchmarks.train_step [--experiments vae_digits ddpm_cifar10 ...] [--steps 50]
    [--dtype float32 bfloat16] [--synthetic] [--override KEY=VALUE ...] [--out FILE]
    [--timing-barrier DIR:N]

FLOPs are counted from the step's jaxpr (convolutions and matmuls, `jaxgen.flops`): XLA's
cost analysis misses cuDNN's convolutions on GPU. MFU divides the achieved FLOP/s by the
device's dense peak for the compute dtype (`jaxgen.flops.PEAKS`; none for CPUs); beside it,
the share of a matmul rate measured here in the same dtype. Compile "cold" is the first
compile with an empty persistent cache, "warm" the same step loaded from that cache after
`jax.clear_caches()` (what a restarted run pays). --synthetic trains on random data of the
experiment's image shape (no download: ddpm_cifar10 anywhere). Writes
benchmarks/results/train_step_<device kind>.json.

--timing-barrier DIR:N lets N processes (variants of flags or keys) compile side by side and
time one at a time: each waits after its warm-up until N are ready (or BARRIER_WAIT seconds
passed), then times while holding an exclusive lock on DIR/lock. Their compile times are
then those of a shared host (and their GPU autotuning ran beside the others' work); their
throughput is that of the device alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib, flops
from jaxgen.training.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILED_STEPS = 5
# Seconds a ready process waits for the others before it times anyway.
BARRIER_WAIT = float(os.environ.get("BARRIER_WAIT", 300))

# Image shapes of the datasets the experiments name, for --synthetic.
SHAPES = {("digits", ""): (8, 8, 1), ("idx", ""): (28, 28, 1),
          ("tfds", "fashion_mnist"): (28, 28, 1), ("tfds", "mnist"): (28, 28, 1),
          ("tfds", "cifar10"): (32, 32, 3)}


def matmul_flops_per_second(dtype, n: int = 4096, repeats: int = 10) -> float:
    """A measured n x n matmul rate in dtype: what this device reaches in practice."""
    if jax.devices()[0].platform == "cpu":
        n = 1024
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
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


def experiment_overrides(experiment: str, synthetic: bool) -> list[str]:
    if not synthetic:
        return []
    config = config_lib.load(f"experiments/{experiment}.py")
    if config.data.source == "domains":  # two-domain data (CycleGAN): each domain synthetic
        return [f"data.{domain}.{override}" for domain in ("domain_a", "domain_b")
                for override in synthetic_overrides(experiment, config.data[domain],
                                                    config.train.batch_size)]
    return [f"data.{override}" for override in synthetic_overrides(
        experiment, config.data, config.train.batch_size)]


def synthetic_overrides(experiment: str, data, batch_size: int) -> list[str]:
    """Random data of the shape the networks see for one dataset's keys."""
    shape = SHAPES.get((data.source, data.name))
    if shape is None:
        raise config_lib.ConfigError(f"{experiment}: no known image shape for --synthetic")
    if data.get("image_size", 0):
        shape = (data.image_size, data.image_size, shape[2])
    if data.get("pad_to", 0):  # the padded shape the networks see
        shape = (data.pad_to, data.pad_to, shape[2])
    return ["source=synthetic", f"synthetic_shape={shape}",
            f"synthetic_size={max(4 * batch_size, 1024)}"]


def mark_ready(barrier: str) -> None:
    """Counts this process in barrier "DIR:N" (once, however often called): ready to time,
    or done, so that a process whose rows failed does not hold the others back."""
    if barrier:
        directory = barrier.rsplit(":", 1)[0]
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"ready.{os.getpid()}"), "w", encoding="utf-8"):
            pass


@contextlib.contextmanager
def timing_slot(barrier: str):
    """With barrier "DIR:N": marks this process ready, waits until N are (at most
    BARRIER_WAIT s), then holds DIR/lock exclusively; yields whether all N were ready."""
    if not barrier:
        yield True
        return
    directory, expected = barrier.rsplit(":", 1)
    mark_ready(barrier)
    deadline = time.monotonic() + BARRIER_WAIT
    while True:
        all_ready = sum(n.startswith("ready.") for n in os.listdir(directory)) >= int(expected)
        if all_ready or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with open(os.path.join(directory, "lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield all_ready
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def benchmark(experiment: str, steps: int, dtype: str, overrides: list[str],
              profile_dir: str = "", barrier: str = "", matmul: dict | None = None) -> dict:
    """One row. matmul: {dtype: measured matmul FLOP/s}, filled inside the timing slot when
    missing (so that a barrier's processes measure it alone too)."""
    flags, _ = cli.parse(cli.parser(""), [f"--config=experiments/{experiment}.py",
                                          "--workdir=/nonexistent"])
    config, splits, family = cli.prepare(flags, [*overrides, f"train.compute_dtype={dtype}"])
    trainer = Trainer(config, family, splits)
    state = trainer.init_state()
    batch = trainer.global_batch(trainer.stream.batch_at(0))
    start = time.perf_counter()
    compiled, step_flops = trainer.compile_step(state, batch)
    cold = time.perf_counter() - start
    jax.clear_caches()
    start = time.perf_counter()
    compiled, _ = trainer.compile_step(state, batch)
    warm = time.perf_counter() - start
    for s in range(3):  # warm-up (and the programs of lazy regularisers due then)
        state, metrics = compiled(state, batch, s)
    jax.block_until_ready(metrics)
    batches = [trainer.global_batch(trainer.stream.batch_at(s)) for s in range(1, steps + 1)]
    jax.block_until_ready(batches)
    with timing_slot(barrier) as all_ready:
        if matmul is not None and dtype not in matmul:
            matmul[dtype] = matmul_flops_per_second(jnp.dtype(dtype))
        start = time.perf_counter()
        for s, b in enumerate(batches, start=3):  # lazy regularisers on their steps
            state, metrics = compiled(state, b, s)
        # The host's time to hand out the steps: near the total, the host is the bottleneck.
        dispatch_seconds = (time.perf_counter() - start) / steps
        jax.block_until_ready((state, metrics))
        step_seconds = (time.perf_counter() - start) / steps
        profile = None
        if profile_dir:  # after the timed steps, so the profiler's overhead stays out of them
            from benchmarks.profile_summary import summarise
            directory = os.path.join(profile_dir, f"{experiment}_{dtype}")
            jax.profiler.start_trace(directory, create_perfetto_trace=True)
            for s, b in enumerate(batches[:PROFILED_STEPS], start=3 + steps):
                state, metrics = compiled(state, b, s)
            jax.block_until_ready((state, metrics))
            jax.profiler.stop_trace()
            profile = summarise(directory)
            profile["steps"] = PROFILED_STEPS
    memory, memory_kind = peak_memory_bytes()
    achieved = step_flops / step_seconds
    peak = flops.peak_flops(jax.devices()[0], dtype)
    return {
        "experiment": experiment,
        "compute_dtype": dtype,
        "overrides": overrides,
        "global_batch": config.train.batch_size,
        "image_shape": list(splits["train"].images.shape[1:]),
        "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "compile_seconds_cold": cold,
        "compile_seconds_warm": warm,
        "step_seconds": step_seconds,
        "dispatch_seconds_per_step": dispatch_seconds,
        "timed_alone": all_ready,
        "images_per_second": config.train.batch_size / step_seconds,
        "flops_per_step": step_flops,
        "flops_per_image": step_flops / config.train.batch_size,
        "achieved_flops_per_second": achieved,
        "mfu": achieved / (peak * jax.device_count()) if peak else None,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "profile": profile,
    }


def device_slug() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", "") or device.platform
    return device.platform if device.platform == "cpu" else re.sub(r"[^a-z0-9]+", "_",
                                                                  kind.lower()).strip("_")


def environment() -> dict:
    """What every benchmark record names: device, host, library versions, command."""
    import flax
    import optax
    device = jax.devices()[0]
    return {"device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
            "num_devices": jax.device_count(),
            "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": {"jax": jax.__version__, "flax": flax.__version__,
                         "optax": optax.__version__},
            "command": " ".join(["python", *command_line()])}


def command_line() -> list[str]:
    """sys.argv as typed: a benchmark run as `python -m benchmarks.NAME` has its file's path
    in sys.argv[0]."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return ["-m", spec.name, *sys.argv[1:]]
    return list(sys.argv)


def write_record(record: dict, out: str, stem: str, echo: bool = True) -> None:
    """Writes record as JSON to out, default benchmarks/results/<stem>_<device kind>.json."""
    if echo:
        print(json.dumps(record, indent=2))
    out = out or os.path.join(ROOT, "benchmarks", "results", f"{stem}_{device_slug()}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    print(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+",
                   default=["vae_digits", "vae_fashion_mnist", "ae_fashion_mnist"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=("float32", "bfloat16"))
    p.add_argument("--synthetic", action="store_true", help="random data of the right shape")
    p.add_argument("--deterministic", action="store_true",
                   help="train.deterministic's XLA flags (GPU): measures their cost")
    p.add_argument("--override", action="append", default=[], help="KEY=VALUE for every config")
    p.add_argument("--profile", default="", metavar="DIR",
                   help=f"also trace {PROFILED_STEPS} steps per row into DIR and summarise them")
    p.add_argument("--timing-barrier", default="", metavar="DIR:N",
                   help="N processes compile side by side and time one at a time")
    p.add_argument("--out", default="")
    args = p.parse_args()
    os.chdir(ROOT)
    # An empty persistent cache of this run's own, so "cold" is a real compile.
    os.environ["JAXGEN_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="jaxgen_xla_")
    from jaxgen.core import runtime
    runtime.configure(deterministic=args.deterministic)
    matmul: dict = {}  # measured in the first timing slot of each dtype
    device = jax.devices()[0]
    record = {
        **environment(),
        "deterministic": args.deterministic,
        "measured_matmul_flops_per_second": matmul,
        "dense_peak_flops_per_second": {d: flops.peak_flops(device, d) for d in args.dtype},
        "steps_timed": args.steps,
        "results": [],
    }
    stem = f"train_step{'_deterministic' if args.deterministic else ''}"
    try:
        run_rows(args, record, matmul, stem)
    finally:
        mark_ready(args.timing_barrier)


def run_rows(args: argparse.Namespace, record: dict, matmul: dict, stem: str) -> None:
    for name in args.experiments:
        for dtype in args.dtype:
            try:
                row = benchmark(name, args.steps, dtype,
                                [*experiment_overrides(name, args.synthetic), *args.override],
                                args.profile, args.timing_barrier, matmul)
            except (config_lib.ConfigError, RuntimeError) as e:
                print(f"{name}: skipped: {e}", file=sys.stderr)
                continue
            row["fraction_of_measured_matmul"] = row["achieved_flops_per_second"] / matmul[dtype]
            record["results"].append(row)
            # Written after every row: a run stopped at its time limit keeps what it measured.
            write_record(record, args.out, stem, echo=False)
            mfu = f"MFU {100 * row['mfu']:.1f}%, " if row["mfu"] is not None else ""
            print(f"{name} {dtype}: {row['images_per_second']:.0f} images/s, "
                  f"{row['flops_per_image'] / 1e9:.3g} GFLOP/image, "
                  f"{row['achieved_flops_per_second'] / 1e12:.3g} TFLOP/s ({mfu}"
                  f"{100 * row['fraction_of_measured_matmul']:.1f}% of measured matmul), "
                  f"compile {row['compile_seconds_cold']:.1f} s cold / "
                  f"{row['compile_seconds_warm']:.2f} s warm, peak memory "
                  f"{row['peak_memory_bytes'] / 2**20:.0f} MiB ({row['peak_memory_kind']})",
                  flush=True)
            if row["profile"]:
                print("  kernel time by kind: " + ", ".join(
                    f"{k} {100 * v / row['profile']['device_seconds']:.0f}%"
                    for k, v in row["profile"]["by_kind"].items()))
                for kernel, _, share in row["profile"]["top"][:12]:
                    print(f"    {100 * share:5.1f}%  {kernel[:100]}")


if __name__ == "__main__":
    main()
