"""Feature extractors of the sample metrics, and the cache of trained classifiers.

Inception weights cannot be downloaded everywhere, and Inception's ImageNet classes are
not a dataset's classes, so every metric has a classifier trained on the dataset itself
(trained once, with the jaxgen trainer, by whoever asks for it first: `jaxgen.runs`) and
cached under a key made of the dataset and the classifier's config; its test accuracy
travels with every metric so a weak extractor is visible. With `eval.extractor=inception`
the FID family of metrics runs on Inception-v3 features from a local weights file instead
(`inception.py`); class-based metrics always use the classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxgen.core import parallel
from jaxgen.models.classifier import predict

RECORD_FILE = "extractor.json"


@dataclasses.dataclass
class Extractor:
    """apply(images [B, H, W, C] in [0, 1], any B) -> {"features" [B, D], "label" int32 [B]},
    jit-compiled over the mesh (`on_mesh`), replicated outputs."""
    name: str
    apply: Callable[[jax.Array], dict[str, jax.Array]]
    num_classes: int
    test_accuracy: float
    directory: str


def cache_root(config: ml_collections.ConfigDict) -> str:
    if config.eval.extractor_dir:
        return config.eval.extractor_dir
    return os.path.join(os.environ.get("JAXGEN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgen"), "extractors")


def cache_directory(root: str, dataset: str, trained_by: dict[str, Any], version: int) -> str:
    """root/classifier-<dataset>-<hash of what decides the weights and the code version>."""
    key = f"v{version}:{json.dumps(trained_by, sort_keys=True)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(root, f"classifier-{dataset}-{digest}")


@contextlib.contextmanager
def exclusive(path: str, wait: bool = True):
    """One process per host trains a given extractor; others wait, then reuse it.

    Multi-process jobs train it together (the trainer is collective), so only
    single-process runs take the lock; and no one when there is nothing to wait for (a
    trained extractor, perhaps in a read-only cache).
    """
    if jax.process_count() > 1 or not wait:
        yield
        return
    import fcntl
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def on_mesh(compiled: Callable[[Any, jax.Array], dict[str, jax.Array]], params: Any,
            mesh) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """compiled(params, images batch-sharded over mesh) as a function of images of any count
    and placement: a batch that does not split over the devices is padded, its extra rows
    dropped."""
    def apply(images: jax.Array) -> dict[str, jax.Array]:
        count = images.shape[0]
        rows = parallel.padded(count, mesh)
        if rows != count:
            images = jnp.concatenate([images, jnp.zeros((rows - count,) + images.shape[1:],
                                                        images.dtype)])
        # Images computed elsewhere (replicated, or on one device) are split over the mesh.
        out = compiled(params, jax.device_put(images, parallel.batch_sharded(mesh)))
        return out if rows == count else {k: v[:count] for k, v in out.items()}
    return apply


def classifier_extractor(model, params: Any, test_accuracy: float, directory: str,
                         num_classes: int) -> Extractor:
    """A trained `models.classifier.ConvClassifier` as an Extractor over the mesh."""
    mesh = parallel.make_mesh()
    compiled = jax.jit(lambda p, x: predict(model, p, x),
                       in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                       out_shardings=parallel.replicated(mesh))
    return Extractor(name="jaxgen-classifier", apply=on_mesh(compiled, params, mesh),
                     num_classes=num_classes, test_accuracy=test_accuracy, directory=directory)
