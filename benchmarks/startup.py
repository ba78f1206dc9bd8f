"""Time from `python -m jaxgen.train` to its first training step, with an empty compilation
cache (cold) and again with the cache the first start filled (warm, what a restart pays).

python -m benchmarks.startup [--experiments ddpm_fashion_mnist ...] [--override KEY=VALUE ...]

The clock runs from the process's launch to the log line of step 1 (train.log_every_steps=1
makes the trainer fetch that step's metrics, so the step has run). Writes
benchmarks/results/startup_<device kind>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def seconds_to_first_step(experiment: str, workdir: str, cache: str,
                          overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "jaxgen.train", f"--config=experiments/{experiment}.py",
               f"--workdir={workdir}", "--config.train.num_steps=2",
               "--config.train.log_every_steps=1", *[f"--config.{o}" for o in overrides]]
    env = dict(os.environ, JAXGEN_COMPILE_CACHE=cache,
               PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    marks = {}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        for mark, text in (("initialised_or_compiled", "train step compiled in"),
                           ("first_step", "train step 1:")):
            if text in line and mark not in marks:
                marks[mark] = time.perf_counter() - start
        if "first_step" in marks:
            break
    proc.kill()
    proc.wait()
    if "first_step" not in marks:
        raise RuntimeError(f"{experiment}: no training step was logged")
    return marks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=["ddpm_fashion_mnist", "vae_digits"])
    p.add_argument("--override", action="append", default=[])
    p.add_argument("--out", default="")
    args = p.parse_args()
    results = []
    for name in args.experiments:
        cache = tempfile.mkdtemp(prefix="jaxgen_xla_")
        cold = seconds_to_first_step(name, tempfile.mkdtemp(), cache, args.override)
        warm = seconds_to_first_step(name, tempfile.mkdtemp(), cache, args.override)
        results.append({"experiment": name, "cold": cold, "warm": warm})
        print(f"{name}: first step after {cold['first_step']:.1f} s cold, "
              f"{warm['first_step']:.1f} s warm", flush=True)
    from benchmarks.train_step import environment, write_record
    write_record({**environment(), "overrides": args.override, "results": results}, args.out,
                 "startup", echo=False)


if __name__ == "__main__":
    main()
