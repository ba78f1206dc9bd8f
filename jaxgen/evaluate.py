"""python -m jaxgen.evaluate --workdir=DIR [--num_examples=N] [--config.eval.KEY=VALUE]

The family's metrics on the test split (its `evaluate_step` when it has one, else its
`eval_step`), written to DIR/metrics.json and printed as a table. Families with a
latent space also get their reconstruction error beside PCA's at the same dimension.
"""

from __future__ import annotations

import math
import os
import time

import jax.numpy as jnp

from jaxgen import cli, latent, parallel
from jaxgen import config as config_lib
from jaxgen.data.pipeline import to_model_range


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--num_examples", type=int, default=0, help="test examples; 0: all")
    flags, overrides = cli.parse(p, argv)
    cli.init_runtime(flags)
    config, splits, family, trainer, state = cli.restore(flags, overrides)
    start = time.perf_counter()
    values = trainer.evaluate(state, getattr(family, "evaluate_step", None), flags.num_examples)
    test = splits["test"]
    num_examples = min(flags.num_examples or len(test), len(test))
    if latent.has_latent_space(family) and family.value_range == "unit":
        count = min(num_examples, 2000)
        x = to_model_range(test.images[:count], test.max_value, family.value_range)
        labels = jnp.asarray(test.labels[:count]) if getattr(family, "num_classes", 0) else None
        values["recon_mse_per_pixel"] = latent.reconstruction_mse(
            family, state.params_for_sampling(), jnp.asarray(x), labels)
        train = splits["train"]
        values["pca_recon_mse_per_pixel"] = latent.pca_reconstruction_mse(
            to_model_range(train.images, train.max_value, family.value_range), x,
            family.latent_dim)
    record = {
        "step": int(state.step),
        "values": values,
        "num_examples": num_examples,
        "seed": config.seed,
        "eval_config": config.eval.to_dict(),
        "seconds": time.perf_counter() - start,
        "run": config_lib.run_record(),
    }
    if parallel.is_primary():
        cli.write_json_atomic(os.path.join(flags.workdir, "metrics.json"), record)
        width = max(len(k) for k in values)
        print(f"{'metric':<{width}}  value  (step {record['step']}, {num_examples} test examples)")
        for key in sorted(values):
            v = values[key]
            print(f"{key:<{width}}  {v:.6g}" if math.isfinite(v) else f"{key:<{width}}  {v}")


if __name__ == "__main__":
    cli.main_guard(main)
