"""The real-data floor of `jaxgen.evaluate`'s translation metrics: for each direction of a
two-domain experiment, FID and KID of up to N real *training* images of the target domain
against the target domain's test images (the reference translations are scored against), on
the target domain's evaluation classifier: what a perfect translator could reach.

python -m benchmarks.translation_floor --config=experiments/cyclegan_sneaker_boot.py [--num 1000]
    [--out FILE]

Writes benchmarks/results/translation_floor_<experiment>.json.
"""

from __future__ import annotations

import argparse
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from jaxgen.core import config as config_lib
    from jaxgen.engine import runs
    from jaxgen.training import workdir as workdir_lib
    from jaxgen.data import sources
    from jaxgen.eval import metrics, translation

    config = config_lib.load(args.config, [])
    splits = sources.from_config(config.data)
    extractors = runs.domain_extractors(config)
    size = config.eval.sample_batch_size
    values = {}
    targets = {"ab": (splits["train"].domain_b, splits["test"].domain_b),
               "ba": (splits["train"], splits["test"])}
    for direction, (train, test) in targets.items():
        features = extractors[direction[1]]["features"]
        real = translation.real_features(train, features, size, args.num)
        reference = translation.real_features(test, features, size, args.num)
        values[f"fid_{direction}"] = metrics.fid(real, reference)
        values[f"kid_{direction}"], _ = metrics.kid(real, reference, config.eval.kid_subsets,
                                                    config.eval.kid_subset_size, config.seed)
        values[f"num_{direction}"] = [len(real), len(reference)]
    print(json.dumps(values))
    name = os.path.splitext(os.path.basename(args.config.partition(":")[0]))[0]
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"translation_floor_{name}.json")
    workdir_lib.write_json_atomic(out, {
        "config": args.config, "seed": config.seed,
        "classifier_test_accuracy": {d: e["classes"].test_accuracy
                                     for d, e in extractors.items()},
        "values": values, "run": workdir_lib.run_record()})


if __name__ == "__main__":
    main()
