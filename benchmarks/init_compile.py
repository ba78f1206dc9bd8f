"""The initialisation compiled at XLA's default optimisation level and at the trainer's
(`runtime.INIT_COMPILER_OPTIONS`): compile seconds of each and whether the weights are
bit-identical, for every shipped experiment and the evaluation classifiers.

python -m benchmarks.init_compile [--experiments vae_digits ddpm_fashion_mnist:cfg ...]
    [--out FILE]

An experiment is NAME[:ARG] of experiments/, or classifier-NAME for the evaluation classifier
of NAME's dataset. ddpm_cifar10 runs on synthetic data of CIFAR-10's shape (no download).
Writes benchmarks/results/init_compile_<device kind>.json; exits 1 if any weights differ.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPERIMENTS = ["vae_digits", "gan_digits", "ddpm_digits", "ddpm_digits:likelihood",
               "ddpm_digits:cfg", "guidance_classifier_digits", "vae_fashion_mnist",
               "vae_beta_ablation", "gan_fashion_mnist", "gan_vanishing_gradients",
               "cgan_fashion_mnist", "ae_fashion_mnist", "ddpm_fashion_mnist",
               "ddpm_fashion_mnist:cfg", "ddpm_cifar10", "classifier-vae_digits",
               "classifier-vae_fashion_mnist"]


def trainer_of(case: str):
    from jaxgen.core import config as config_lib
    from jaxgen.engine import runs
    from jaxgen.data import sources
    from jaxgen.families import classifier
    from jaxgen.training.trainer import Trainer
    name, _, arg = case.partition(":")
    if name.startswith("classifier-"):
        config = runs.classifier_config(config_lib.load(f"experiments/{name[11:]}.py", []))
        splits = sources.from_config(config.data)
        family = classifier.ClassifierFamily(config, sources.DataSpec.of(splits["train"]))
    else:
        synthetic = (["data.source=synthetic", "data.synthetic_shape=(32,32,3)",
                      "data.synthetic_size=512"] if name == "ddpm_cifar10" else [])
        config = config_lib.load(f"experiments/{name}.py" + (f":{arg}" if arg else ""),
                                 synthetic)
        splits, family = runs.prepare_config(config)
    return Trainer(config, family, splits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    p.add_argument("--out", default="")
    args = p.parse_args()
    import jax
    import numpy as np

    from benchmarks.train_step import environment, write_record
    from jaxgen.core import contract
    from jaxgen.core.rng import root_key_data
    from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
    results = []
    for case in args.experiments:
        trainer = trainer_of(case)
        batch = trainer.global_batch(trainer.stream.batch_at(0))
        key = root_key_data(trainer.config.seed)
        init = functools.partial(contract.initial_state, trainer.family, ema=trainer.ema)
        lowered = jax.jit(init).lower(key, batch)
        row = {"experiment": case}
        leaves = {}
        for label, options in (("default", {}), ("trainer", INIT_COMPILER_OPTIONS)):
            start = time.perf_counter()
            compiled = lowered.compile(compiler_options=options)
            row[f"compile_seconds_{label}"] = time.perf_counter() - start
            leaves[label] = jax.tree.leaves(jax.block_until_ready(compiled(key, batch)))
        row["arrays"] = len(leaves["default"])
        row["identical_arrays"] = sum(np.array_equal(np.asarray(a), np.asarray(b))
                                      for a, b in zip(leaves["default"], leaves["trainer"]))
        results.append(row)
        print(row, flush=True)
    write_record({**environment(), "options": INIT_COMPILER_OPTIONS, "results": results},
                 args.out, "init_compile", echo=False)
    if any(r["identical_arrays"] != r["arrays"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
