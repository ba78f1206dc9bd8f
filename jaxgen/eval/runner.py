"""Sample-based metrics of a model against the test split.

The runner receives what it measures as a function that draws batch b of samples; it knows
nothing of trainers or families. Samples are generated batch by batch (split over the `data`
axis of the mesh), passed through the extractor at once and dropped: only features [N, D]
and predicted labels [N] stay on the host, never N images. The same metrics are computed
for real images as the floor a model can reach: images of one half of the test split (which
the dataset classifier never saw) against the other half.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from jaxgen.core import parallel
from jaxgen.data.pipeline import eval_batches
from jaxgen.data.sources import Split
from jaxgen.eval import metrics
from jaxgen.eval.extractor import Extractor
from jaxgen.core.progress import Progress

# (b, labels int32 [P] batch-sharded) -> batch b of samples [P, H, W, C] in [0, 1],
# batch-sharded, P the batch size padded to the devices (`parallel.padded`; rows past the
# batch size are dropped); labels are ignored by an unconditional model.
BatchSampler = Callable[[int, jax.Array], jax.Array]

log = logging.getLogger("jaxgen")


def real_features(extractors: dict[str, Extractor], split: Split, batch_size: int,
                  num: int = 0) -> dict[str, np.ndarray]:
    """{"features": [N, D], "label" (predicted): [N], "true_label": [N]} of a split."""
    mesh = parallel.make_mesh()
    rows = parallel.padded(batch_size, mesh)
    parts: dict[str, list] = {"features": [], "label": [], "true_label": [], "mask": []}
    for local in eval_batches(split, batch_size, parallel.process_rows(rows), "unit",
                              num_examples=num, pad_to=rows):
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


def _collect(parts, extractors: dict[str, Extractor], images: jax.Array,
             keep: int | None = None) -> None:
    """Features from the feature extractor, predicted labels from the classifier (of the
    first `keep` rows)."""
    parts["features"].append(np.asarray(parallel.fetch(
        extractors["features"].apply(images)["features"]))[:keep])
    parts["label"].append(np.asarray(parallel.fetch(
        extractors["classes"].apply(images)["label"]))[:keep])


def generated_features(sample_batch: BatchSampler, extractors: dict[str, Extractor], num: int,
                       batch_size: int, num_classes: int) -> dict[str, np.ndarray]:
    """{"features": [num, D], "label": [num], "requested": [num], "batch_seconds":
    [batches]} of num samples, asking for the classes 0, 1, ..., num_classes - 1, 0, ... in
    turn (num_classes 0: all 0); batch_seconds: each batch's sampling time (the first's
    includes the sampler's compile)."""
    mesh = parallel.make_mesh()
    parts: dict[str, list] = {"features": [], "label": [], "requested": []}
    padded = parallel.padded(batch_size, mesh)
    rows = parallel.process_rows(padded)
    seconds = []
    progress = Progress(f"sampling {num} images for the metrics", -(-num // batch_size))
    for b in range(-(-num // batch_size)):
        requested = (np.arange(b * batch_size, b * batch_size + padded)
                     % max(num_classes, 1)).astype(np.int32)
        labels = parallel.to_global({"label": requested[rows]}, mesh)["label"]
        start = time.perf_counter()
        images = jax.block_until_ready(sample_batch(b, labels))
        seconds.append(time.perf_counter() - start)
        _collect(parts, extractors, images, keep=batch_size)
        parts["requested"].append(requested[:batch_size])
        progress.update(b + 1)
    return {**{k: np.concatenate(v)[:num] for k, v in parts.items()},
            "batch_seconds": np.array(seconds)}


def seconds_per_1000(batch_seconds: np.ndarray, batch_size: int) -> dict:
    """The sampler's cost on this machine: seconds per 1,000 images at batch_size, from the
    batches after the first (whose time includes the compile) where there are any."""
    timed = batch_seconds[1:] if len(batch_seconds) > 1 else batch_seconds
    return {"seconds_per_1000": float(1000 * timed.sum() / (len(timed) * batch_size)),
            "batch_size": batch_size, "batches_timed": len(timed),
            "compile_included": len(batch_seconds) == 1}


def compare(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray],
            num_classes: int, eval_config: ml_collections.ConfigDict, seed: int,
            requested: np.ndarray | None = None) -> dict[str, float]:
    """Every sample metric of a candidate set (features, labels) against the reference."""
    out = {"fid": metrics.fid(candidate["features"], reference["features"])}
    out["kid"], out["kid_std"] = metrics.kid(candidate["features"], reference["features"],
                                             eval_config.kid_subsets,
                                             eval_config.kid_subset_size, seed)
    out.update(metrics.precision_recall(candidate["features"], reference["features"],
                                        eval_config.pr_k))
    out.update(metrics.mode_coverage(candidate["label"], reference["true_label"], num_classes,
                                     eval_config.coverage_threshold))
    if requested is not None:
        out["conditional_accuracy"] = metrics.conditional_accuracy(candidate["label"], requested)
    return out


def real_column_rows(num_test: int, num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the real images, rows of their reference), disjoint, in a test split of
    num_test images: a fixed random half of it as the reference, up to num of the others as
    the images. Training images would flatter the floor: the dataset classifier, whose
    features the metrics use, trained on them (accuracy 1.0 there). The model's own reference
    is the whole test split, so this floor is measured against half as many images."""
    order = np.random.default_rng(seed).permutation(num_test)
    half = num_test // 2
    return order[half:][:num], order[:half]


def sample_metrics(sample_batch: BatchSampler, num_classes: int,
                   extractors: dict[str, Extractor], splits: dict[str, Split],
                   eval_config: ml_collections.ConfigDict, seed: int, num_samples: int,
                   real: bool = True) -> dict:
    """{"model": metrics of num_samples samples against the test split, "real": the same for
    up to as many held-out real images (`real_column_rows`; unless real=False), "extractor":
    what measured them}.

    num_classes: classes the sampler takes labels for (0: unconditional); a conditional
    model also gets conditional accuracy."""
    batch = eval_config.sample_batch_size
    reference = real_features(extractors, splits["test"], eval_config.batch_size)
    data_classes = splits["test"].num_classes
    log.info("generating %d samples in batches of %d", num_samples, batch)
    generated = generated_features(sample_batch, extractors, num_samples, batch, num_classes)
    conditional = num_classes > 0
    out = {"model": compare(generated, reference, data_classes, eval_config, seed,
                            generated["requested"] if conditional else None)}
    if not real:
        return out
    real_rows, reference_rows = real_column_rows(len(reference["label"]), num_samples, seed)
    held_out = {k: v[real_rows] for k, v in reference.items()}
    return {
        **out,
        "real": compare(held_out, {k: v[reference_rows] for k, v in reference.items()},
                        data_classes, eval_config, seed,
                        held_out["true_label"] if conditional else None),
        "num_samples": num_samples,
        "num_real": len(real_rows),
        "num_real_reference": len(reference_rows),
        "num_reference": len(reference["label"]),
        "sampling": seconds_per_1000(generated["batch_seconds"], batch),
        "extractor": {"features": extractors["features"].name,
                      "classes": extractors["classes"].name,
                      "classifier_test_accuracy": extractors["classes"].test_accuracy,
                      "classifier_directory": extractors["classes"].directory},
    }
