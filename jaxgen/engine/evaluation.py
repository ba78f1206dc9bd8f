"""Every metric of a restored run, recorded in its workdir: what `python -m jaxgen.evaluate`
computes (the command's doc says which metrics) and the Python API's `Model.evaluate`."""

from __future__ import annotations

import json
import os
import time

import jax.numpy as jnp
import ml_collections

from jaxgen.core import config as config_lib, parallel
from jaxgen.core.contract import (LatentGenerator, LatentModel, LikelihoodModel, PromptModel,
                                  Sampler, Translator)
from jaxgen.data.ranges import to_model_range
from jaxgen.engine import runs
from jaxgen.eval import baselines, inception
from jaxgen.pictures import latent
from jaxgen.training import workdir as workdir_lib


def evaluate(config, splits, family, trainer, state, workdir: str,
             output: str | None = None) -> dict:
    """Every metric of `state` (see the module's doc), recorded in workdir/output (default
    metrics.json, or metrics_KEY=VALUE....json for sample.* settings other than the run's);
    returns the record ("values": the model's metrics, "real": the real-data column...)."""
    if output is None:
        tag = runs.settings_tag(workdir_lib.read_config(workdir), config)
        output = f"metrics{tag}.json"
    samples = bool(config.eval.num_samples) and isinstance(family, Sampler)
    if samples and config.eval.extractor == "inception":
        inception.check_weights_file(config.eval.inception_weights)  # before any work
    # Before any work too: an extractor cache that cannot be used fails here, not later.
    extractors = runs.load_extractors(config, splits) if samples else None
    start = time.perf_counter()
    test = splits["test"]
    num_examples = min(config.eval.num_examples or len(test), len(test))
    reused = reusable_likelihoods(workdir, output, config, int(state.step))
    if reused:
        source, values = reused
    else:
        values = trainer.evaluate(
            state, family.likelihood_step if isinstance(family, LikelihoodModel) else None)
        if isinstance(family, LatentModel) and family.value_range == "unit":
            values.update(reconstruction_metrics(family, state, splits, num_examples))
        if any(k.endswith(BITS) for k in values):  # what a bits/dim figure must beat
            values[BASELINE] = baselines.pixel_histogram_bits_per_dim(
                splits["train"], test, binarize=config.data.binarize)
    record = {
        "step": int(state.step),
        "values": values,
        "likelihood_keys": sorted(values),
        "num_examples": num_examples,
        "seed": config.seed,
        "eval_config": config.eval.to_dict(),
        "config": json.loads(config.to_json()),  # with this evaluation's overrides
        "run": workdir_lib.run_record(),
    }
    if reused:
        record["likelihood_from"] = source
    if samples:
        found = runs.sample_metrics(trainer, state, config.eval.num_samples,
                                    extractors=extractors)
        values.update(found["model"])
        record["real"] = found.pop("real")
        record.update({k: v for k, v in found.items() if k != "model"})
    if samples and isinstance(family, PromptModel) and config.eval.prompt_samples:
        following = runs.prompt_metrics(trainer, state, extractors, workdir)
        values.update(following["values"])
        record["prompts"] = following["prompts"]
    if samples and isinstance(family, LatentGenerator) and config.eval.get("ppl_samples"):
        values.update(runs.path_length_metrics(trainer, state, extractors))
    if isinstance(family, Translator) and config.eval.num_samples:
        values.update(runs.translation_metrics(trainer, state))
    record["worse_than_baseline"] = worse_than_baseline(values)
    record["seconds"] = time.perf_counter() - start
    if parallel.is_primary():
        workdir_lib.write_json_atomic(workdir_lib.path(workdir, output), record)
    return record


# Keys that change only which samples are drawn or how they are scored (and when things
# happen): they leave every likelihood metric of a checkpoint as it is.
SAMPLE_ONLY_KEYS = ("sample.", "eval.num_samples", "eval.sample_batch_size", "eval.extractor",
                    "eval.inception_weights", "eval.pr_k", "eval.kid_subsets",
                    "eval.kid_subset_size", "eval.coverage_threshold", "eval.track_samples",
                    "eval.every_steps", "train.num_steps", "train.log_every_steps", "checkpoint.")


def reusable_likelihoods(workdir: str, output: str, config, step: int
                         ) -> tuple[str, dict[str, float]] | None:
    """(file name, likelihood metrics) of an earlier evaluation in workdir of the same step
    whose config differs from this one only in SAMPLE_ONLY_KEYS; None when there is none."""
    def relevant(tree: dict) -> dict:
        return {k: v for k, v in config_lib.flatten(tree).items()
                if not k.startswith(SAMPLE_ONLY_KEYS)}

    mine = relevant(json.loads(config.to_json()))
    for name in sorted(os.listdir(workdir)):
        if name == output or not (name.startswith("metrics") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(workdir, name), encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if not (isinstance(record, dict) and record.get("step") == step
                and "likelihood_keys" in record and isinstance(record.get("config"), dict)):
            continue
        # A base key added since that evaluation: its absence meant the default's behaviour.
        earlier = config_lib.fill_defaults(ml_collections.ConfigDict(record["config"]))
        if relevant(json.loads(earlier.to_json())) == mine:
            return name, {k: record["values"][k] for k in record["likelihood_keys"]}
    return None


BITS = "_bits_per_dim"
BASELINE = "pixel_histogram_bits_per_dim"


def worse_than_baseline(values: dict[str, float]) -> list[str]:
    """The bits/dim metrics above the independent per-pixel histogram's (eval.baselines)."""
    if BASELINE not in values:
        return []
    return sorted(k for k, v in values.items()
                  if k.endswith(BITS) and k != BASELINE and v > values[BASELINE])


def reconstruction_metrics(family, state, splits, num_examples: int) -> dict[str, float]:
    test, train = splits["test"], splits["train"]
    count = min(num_examples, 2000)
    x = to_model_range(test.images[:count], test.max_value, family.value_range)
    labels = jnp.asarray(test.labels[:count]) if family.num_classes else None
    return {
        "recon_mse_per_pixel": latent.reconstruction_mse(
            family, state.params_for_sampling(), jnp.asarray(x), labels),
        "pca_recon_mse_per_pixel": latent.pca_reconstruction_mse(
            to_model_range(train.images, train.max_value, family.value_range), x,
            family.latent_dim),
    }
