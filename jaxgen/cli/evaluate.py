"""python -m jaxgen.evaluate --workdir=DIR [--num_samples=N] [--output=FILE] [--config.KEY=VALUE]

Every metric of the newest checkpoint, written to DIR/metrics.json (metrics_KEY=VALUE.json
with sample.* settings other than the run's) and printed as a
table: the family's likelihood metrics on the test split (its `likelihood_step` when it
is a `LikelihoodModel`, else its `eval_step`); for families that sample, FID, KID, precision/recall,
mode coverage (and conditional accuracy) of N samples against the test split, beside
the same metrics of up to N real test images against the rest of the test split (images the
evaluation classifier never saw: `eval.runner.real_column_rows`); for
families with a latent space, the reconstruction error beside PCA's at the same dimension;
for text-to-image runs, prompt following (`eval.prompts`): class and attribute accuracy of
eval.prompt_samples samples per prompt, on seen and held-out attribute-class pairs; for
generators with eval.ppl_samples, perceptual path length in Z (and W for style-based
generators; `eval.path_length`); for translators (CycleGAN), on eval.num_samples test images
per direction: FID/KID of the translations against the target domain, cycle error, the error
against the true translation where one is known, class agreement and target-class accuracy
(`eval.translation`).

Evaluations of one checkpoint that differ only in how samples are drawn or scored (a guidance
scale, a sampler, the number of samples) take the likelihood metrics from the first of them
(`likelihood_from` in the record) instead of recomputing a bound that cannot change.
"""

from __future__ import annotations

import math
import os

from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib, parallel
from jaxgen.engine.evaluation import BASELINE, evaluate


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--num_examples", type=int, default=None,
                   help="test examples for likelihoods; default config.eval.num_examples (0: all)")
    p.add_argument("--num_samples", type=int, default=None,
                   help="samples for FID etc.; default config.eval.num_samples (0: none)")
    p.add_argument("--output", default=None,
                   help="file name in DIR for the results; default metrics.json, or "
                        "metrics_KEY=VALUE....json naming the sample.* settings that differ "
                        "from the run's (a guidance scale, a sampler), so evaluations of one "
                        "run sit side by side")
    flags, overrides = cli.parse(p, argv)
    if flags.output is not None and (os.path.basename(flags.output) != flags.output
                                     or not flags.output.endswith(".json")):
        raise config_lib.ConfigError(f"--output must be a .json file name, got '{flags.output}'")
    if flags.num_samples is not None:
        overrides.append(f"eval.num_samples={flags.num_samples}")
    if flags.num_examples is not None:
        overrides.append(f"eval.num_examples={flags.num_examples}")
    cli.init_runtime(flags, overrides)
    config, splits, family, trainer, state = cli.restore(flags, overrides)
    record = evaluate(config, splits, family, trainer, state, flags.workdir, flags.output)
    if parallel.is_primary():
        print(format_table(record))


def format_table(record: dict) -> str:
    """The metrics as text: one row per metric, the real-data floor beside sample metrics."""
    values, real = record["values"], record.get("real", {})
    width = max(len(k) for k in values)
    lines = [f"step {record['step']}: {record['num_examples']} test examples"]
    if real:
        accuracy = record["extractor"]["classifier_test_accuracy"]
        lines[0] += (f", {record['num_samples']} samples vs {record['num_reference']} test "
                     f"images; real column: {record['num_real']} test images vs the other "
                     f"{record['num_real_reference']}; "
                     f"classifier test accuracy {accuracy:.4f}; FID/KID/precision/recall on "
                     f"the features of {record['extractor']['features']}")
    lines.append(f"{'metric':<{width}}  {'model':>12}  {'real data':>12}")
    for key in sorted(values):
        lines.append(f"{key:<{width}}  {_fmt(values[key]):>12}  "
                     f"{_fmt(real[key]) if key in real else '':>12}")
    for key in record.get("worse_than_baseline", []):
        lines.append(f"warning: {key} is worse than an independent per-pixel histogram "
                     f"({_fmt(values[BASELINE])} bits/dim)")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)

