"""Sample-metric cost: time and peak memory of evaluating N samples of a trained workdir.

python -m benchmarks.evaluate --workdir=runs/vae_fmnist [--num_samples 1000 10000]
Each N runs in a fresh process (peak RSS only grows within a process), with the
extractor already cached. Writes benchmarks/results/evaluate_<platform>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(workdir: str, num_samples: int) -> dict:
    """Runs in the child: restore, then time sample_metrics alone."""
    import jax
    from jaxgen.cli import common as cli
    from jaxgen.engine import runs
    flags, overrides = cli.parse(cli.parser(""), [f"--workdir={workdir}"])
    config, splits, family, trainer, state = cli.restore(flags, overrides)
    extractors = runs.load_extractors(config, splits)  # trains the classifier if not cached
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    found = runs.sample_metrics(trainer, state, num_samples, extractors=extractors)
    seconds = time.perf_counter() - start
    return {
        "num_samples": num_samples,
        "seconds": seconds,
        "samples_per_second": num_samples / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_before_bytes": before,
        "fid": found["model"]["fid"],
        "devices": jax.device_count(),
        "image_shape": list(splits["test"].images.shape[1:]),
        "family": config.family,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--num_samples", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.workdir, args.child)))
        return
    results = []
    for n in args.num_samples:
        out = subprocess.run([sys.executable, "-m", "benchmarks.evaluate",
                              f"--workdir={args.workdir}", f"--child={n}"],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    import jax
    path = os.path.join(ROOT, "benchmarks", "results", f"evaluate_{jax.default_backend()}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"machine": platform.platform(), "processor": platform.processor(),
                   "cpu_count": os.cpu_count(), "workdir": args.workdir, "results": results},
                  f, indent=2)
    print(path)


if __name__ == "__main__":
    main()
