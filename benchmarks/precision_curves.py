"""float32 against bfloat16: the same training run in each compute dtype, test loss at every
eval step side by side, and throughput.

python -m benchmarks.precision_curves [--experiment ddpm_fashion_mnist] [--steps 1500]
    [--override KEY=VALUE ...] [--out FILE]

Writes benchmarks/results/precision_curves_<device kind>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = ("float32", "bfloat16")



def curve(workdir: str, split: str, key: str) -> dict[int, float]:
    from jaxgen.training.writers import read_metrics
    return {int(r["step"]): float(r[key]) for r in read_metrics(workdir, split) if key in r}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="ddpm_fashion_mnist")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--override", action="append", default=[])
    p.add_argument("--out", default="")
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="jaxgen_precision_")
    runs = {}
    for dtype in DTYPES:
        workdir = os.path.join(root, dtype)
        start = time.perf_counter()
        with open(f"{workdir}.log", "w", encoding="utf-8") as log:
            done = subprocess.run(
                [sys.executable, "-m", "jaxgen.train",
                 f"--config=experiments/{args.experiment}.py", f"--workdir={workdir}",
                 f"--config.train.num_steps={args.steps}",
                 f"--config.train.compute_dtype={dtype}",
                 f"--config.eval.every_steps={max(args.steps // 5, 1)}",
                 f"--config.sample.every_steps={args.steps}",
                 *[f"--config.{o}" for o in args.override]],
                cwd=ROOT, env=dict(os.environ), stdout=log, stderr=log)
        if done.returncode:
            with open(f"{workdir}.log", encoding="utf-8") as f:
                sys.exit(f"{dtype} run failed; its log ends:\n{f.read()[-3000:]}")
        train = curve(workdir, "train", "images_per_sec")
        runs[dtype] = {"test_loss": curve(workdir, "test", "loss"),
                       "images_per_second_last_log": train[max(train)] if train else None,
                       "wall_seconds": time.perf_counter() - start}
    f32, bf16 = runs["float32"]["test_loss"], runs["bfloat16"]["test_loss"]
    steps = sorted(set(f32) & set(bf16))
    from benchmarks.train_step import environment, write_record
    record = {
        **environment(),
        "runs": runs,
        "relative_difference_of_test_loss": {s: (bf16[s] - f32[s]) / f32[s] for s in steps},
    }
    write_record(record, args.out, "precision_curves")


if __name__ == "__main__":
    main()
