"""The real-data column of `jaxgen.evaluate` alone: the floor of every sample metric at N images.

python -m benchmarks.real_data_floor --config=experiments/NAME.py --num 1000 10000 [--out FILE]

Up to N test images against the other half of the test split (`eval.runner.real_column_rows`),
on the features of the experiment's evaluation classifier (trained into the extractor cache on
first use), with the experiment's eval settings and seed: the figures `evaluate` prints beside a
model's, without a model. Writes benchmarks/results/real_data_floor_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--num", type=int, nargs="+", default=[1000])
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from jaxgen.core import config as config_lib
    from jaxgen.engine import runs
    from jaxgen.training import workdir as workdir_lib
    from jaxgen.data import sources
    from jaxgen.eval import runner

    config = config_lib.load(args.config, [])
    splits = sources.from_config(config.data)
    extractors = runs.load_extractors(config, splits)
    test = splits["test"]
    reference = runner.real_features(extractors, test, config.eval.batch_size)
    rows = []
    for num in args.num:
        real, rest = runner.real_column_rows(len(test), num, config.seed)
        pick = lambda r: {k: v[r] for k, v in reference.items()}  # noqa: E731
        values = runner.compare(pick(real), pick(rest), test.num_classes, config.eval,
                                config.seed, reference["true_label"][real])
        rows.append({"num_real": len(real), "num_real_reference": len(rest), **values})
        print(json.dumps(rows[-1]))
    dataset = config.data.name or config.data.source
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"real_data_floor_{dataset}.json")
    workdir_lib.write_json_atomic(out, {
        "config": args.config, "seed": config.seed,
        "extractor": {"features": extractors["features"].name,
                      "classifier_test_accuracy": extractors["classes"].test_accuracy},
        "rows": rows, "run": workdir_lib.run_record()})


if __name__ == "__main__":
    main()
