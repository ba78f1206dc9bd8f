"""Sample-based metrics of a trained family against the test split.

Samples are generated batch by batch (jit-compiled, split over the `data` axis of the
mesh), passed through the extractor at once and dropped: only features [N, D] and
predicted labels [N] stay on the host, never N images. The same metrics are computed
for held-out real images (training images) against the test split, the floor a model
can reach at this sample count.
"""

from __future__ import annotations

import functools
import logging

import jax
import ml_collections
import numpy as np

from jaxgen import parallel
from jaxgen.data.pipeline import eval_batches
from jaxgen.data.sources import Split
from jaxgen.eval import metrics
from jaxgen.eval.extractor import Extractor, load_classifier, to_unit_range
from jaxgen.state import TrainState
from jaxgen.trainer import Trainer, purpose_rng

log = logging.getLogger("jaxgen")


def real_features(extractors: dict[str, Extractor], split: Split, batch_size: int,
                  num: int = 0) -> dict[str, np.ndarray]:
    """{"features": [N, D], "label" (predicted): [N], "true_label": [N]} of a split."""
    mesh = parallel.make_mesh()
    parts: dict[str, list] = {"features": [], "label": [], "true_label": [], "mask": []}
    for local in eval_batches(split, batch_size, parallel.process_rows(batch_size), "unit",
                              num_examples=num):
        batch = parallel.to_global(local, mesh)
        _collect(parts, extractors, batch["image"])
        parts["true_label"].append(parallel.fetch(_replicate(batch["label"], mesh)))
        parts["mask"].append(parallel.fetch(_replicate(batch["mask"], mesh)))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    keep = out.pop("mask") > 0
    return {k: v[keep] for k, v in out.items()}


@functools.lru_cache(maxsize=None)
def _replicator(mesh):
    return jax.jit(lambda a: a, out_shardings=parallel.replicated(mesh))


def _replicate(x: jax.Array, mesh) -> jax.Array:
    """A batch-sharded array -> a replicated one, which every process can read."""
    return _replicator(mesh)(x)


def _collect(parts, extractors: dict[str, Extractor], images: jax.Array) -> None:
    """Features from the feature extractor, predicted labels from the classifier."""
    parts["features"].append(np.asarray(parallel.fetch(
        extractors["features"].apply(images)["features"])))
    parts["label"].append(np.asarray(parallel.fetch(extractors["classes"].apply(images)["label"])))


def label_classes(family) -> int:
    """How many classes the family's sampler takes labels for (0: unconditional)."""
    return getattr(family, "sampling_classes", getattr(family, "num_classes", 0))


def generated_features(trainer: Trainer, state: TrainState, extractors: dict[str, Extractor],
                       num: int, batch_size: int) -> dict[str, np.ndarray]:
    """{"features": [num, D], "label": [num], "requested": [num]} of num samples.

    Batch b draws from fold_in(the run's "sample" key, 1_000_000 + b), so the numbers
    depend on the seed and batch size, never on the number of devices.
    """
    family, mesh = trainer.family, trainer.mesh
    num_classes = label_classes(family)
    data, repl = parallel.batch_sharded(mesh), parallel.replicated(mesh)

    def sample(state, key_data, labels):
        images = family.sample(state, jax.random.wrap_key_data(key_data), batch_size,
                               labels if num_classes else None)
        return to_unit_range(images, family.value_range)

    sample_fn = jax.jit(sample, in_shardings=(repl, repl, data), out_shardings=data)
    root = jax.random.wrap_key_data(state.rng)
    parts: dict[str, list] = {"features": [], "label": [], "requested": []}
    rows = parallel.process_rows(batch_size)
    for b in range(-(-num // batch_size)):
        requested = (np.arange(b * batch_size, (b + 1) * batch_size)
                     % max(num_classes, 1)).astype(np.int32)
        labels = parallel.to_global({"label": requested[rows]}, mesh)["label"]
        key = jax.random.key_data(purpose_rng(root, "sample", 1_000_000 + b))
        _collect(parts, extractors, sample_fn(state, key, labels))
        parts["requested"].append(requested)
    return {k: np.concatenate(v)[:num] for k, v in parts.items()}


def compare(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            num_classes: int, eval_config: ml_collections.ConfigDict, seed: int,
            requested: np.ndarray | None = None) -> dict[str, float]:
    """Every sample metric of a candidate set (features, labels) against the reference."""
    out = {"fid": metrics.fid(candidate["features"], reference["features"])}
    out["kid"], out["kid_stderr"] = metrics.kid(candidate["features"], reference["features"],
                                                eval_config.kid_block_size, seed)
    out.update(metrics.precision_recall(candidate["features"], reference["features"],
                                        eval_config.pr_k))
    out.update(metrics.mode_coverage(candidate["label"], reference["true_label"], num_classes,
                                     eval_config.coverage_threshold))
    if requested is not None:
        out["conditional_accuracy"] = metrics.conditional_accuracy(candidate["label"], requested)
    return out


def load_extractors(config: ml_collections.ConfigDict,
                    splits: dict[str, Split]) -> dict[str, Extractor]:
    """{"classes": the dataset classifier, "features": the FID feature extractor}."""
    classifier = load_classifier(config, splits)
    if config.eval.extractor == "classifier":
        return {"classes": classifier, "features": classifier}
    from jaxgen.eval.inception import load_inception
    return {"classes": classifier, "features": load_inception(config.eval.inception_weights)}


def sample_metrics(trainer: Trainer, state: TrainState, splits: dict[str, Split],
                   num_samples: int, real: bool = True) -> dict:
    """{"model": metrics of num_samples samples, "real": the same for as many held-out
    real images (unless real=False), "extractor": what measured them}."""
    config = trainer.config
    extractors = load_extractors(config, splits)
    batch = config.eval.sample_batch_size
    reference = real_features(extractors, splits["test"], config.eval.batch_size)
    num_classes = splits["test"].num_classes
    log.info("generating %d samples in batches of %d", num_samples, batch)
    generated = generated_features(trainer, state, extractors, num_samples, batch)
    conditional = label_classes(trainer.family) > 0
    out = {"model": compare(generated, reference, num_classes, config.eval, config.seed,
                            generated["requested"] if conditional else None)}
    if not real:
        return out
    # Held-out real images: a fixed random subset of the training split.
    train = splits["train"]
    order = np.random.default_rng(config.seed).permutation(len(train))[:num_samples]
    held_out = Split(train.images[order], train.labels[order], train.max_value, train.num_classes)
    held_out_features = real_features(extractors, held_out, config.eval.batch_size)
    return {
        **out,
        "real": compare(held_out_features, reference, num_classes, config.eval, config.seed,
                        held_out_features["true_label"] if conditional else None),
        "num_samples": num_samples,
        "num_real": len(held_out_features["label"]),
        "num_reference": len(reference["label"]),
        "extractor": {"features": extractors["features"].name,
                      "classes": extractors["classes"].name,
                      "classifier_test_accuracy": extractors["classes"].test_accuracy,
                      "classifier_directory": extractors["classes"].directory},
    }
