"""jaxgen's training steps against the same networks in PyTorch, timed interleaved on this CPU.

python -m benchmarks.pytorch_parity --torch-python /path/to/torch/venv/bin/python
    [--rounds 3] [--steps 20] [--models vae gan unet] [--compile] [--out FILE]

Each round runs, one process at a time, jaxgen's step (`train_step.py --synthetic`, float32)
and PyTorch's (`torch_reference.py`: eager NCHW, eager channels-last, and torch.compile with
--compile) for every model, so a busy moment of a shared machine hits both sides alike.
PyTorch runs with OMP_WAIT_POLICY=PASSIVE (its OpenMP threads otherwise spin, slowing what
runs beside them). Reports the median images/s of each program over the rounds, their range,
jaxgen's ratio to the fastest PyTorch variant and that ratio's range over the rounds.
Writes benchmarks/results/pytorch_parity_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = {"vae": "vae_fashion_mnist", "gan": "gan_fashion_mnist",
               "unet": "ddpm_fashion_mnist"}


def run_jaxgen(model: str, steps: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--synthetic",
                        "--experiments", EXPERIMENTS[model], "--steps", str(steps),
                        "--out", out.name], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
        with open(out.name, encoding="utf-8") as f:
            return json.load(f)["results"][0]["images_per_second"]


def run_torch(python: str, model: str, steps: int, variant: str) -> dict:
    flags = {"eager": [], "channels_last": ["--channels-last"], "compile": ["--compile"]}
    done = subprocess.run([python, "-m", "benchmarks.torch_reference", "--model", model,
                           "--steps", str(steps), *flags[variant]], cwd=ROOT, check=True,
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--torch-python", required=True, help="a python that imports torch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--models", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--out", default="")
    args = p.parse_args()
    variants = ["eager", "channels_last", *(["compile"] if args.compile else [])]
    samples = {m: {"jaxgen": [], **{f"torch_{v}": [] for v in variants}} for m in args.models}
    torch_version = ""
    for round_ in range(args.rounds):
        for model in args.models:
            samples[model]["jaxgen"].append(run_jaxgen(model, args.steps))
            for variant in variants:
                row = run_torch(args.torch_python, model, args.steps, variant)
                samples[model][f"torch_{variant}"].append(row["images_per_second"])
                torch_version = row["torch"]
            print(f"round {round_ + 1} {model}: " + ", ".join(
                f"{k} {v[-1]:.0f}" for k, v in samples[model].items()), flush=True)
    summary = {}
    for model, programs in samples.items():
        medians = {k: statistics.median(v) for k, v in programs.items()}
        fastest = max((k for k in medians if k.startswith("torch")), key=medians.get)
        # The spread: each round's ratio pairs programs timed minutes apart, so a busy moment
        # of the machine moves both sides of it alike.
        ratios = [j / t for j, t in zip(programs["jaxgen"], programs[fastest])]
        summary[model] = {
            "experiment": EXPERIMENTS[model], "median_images_per_second": medians,
            "range_images_per_second": {k: [min(v), max(v)] for k, v in programs.items()},
            "fastest_torch": fastest,
            "jaxgen_over_fastest_torch": medians["jaxgen"] / medians[fastest],
            "per_round_ratio": ratios, "per_round_ratio_range": [min(ratios), max(ratios)]}
        print(f"{model}: jaxgen {medians['jaxgen']:.0f} images/s, {fastest} "
              f"{medians[fastest]:.0f}: ratio {summary[model]['jaxgen_over_fastest_torch']:.2f} "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")
    from benchmarks.train_step import environment, write_record
    record = {**environment(), "torch": torch_version, "rounds": args.rounds,
              "steps": args.steps, "samples": samples, "summary": summary}
    write_record(record, args.out, "pytorch_parity", echo=False)


if __name__ == "__main__":
    main()
