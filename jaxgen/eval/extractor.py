"""The feature extractor of the sample metrics: a classifier jaxgen trains per dataset.

Inception weights cannot be downloaded everywhere, and Inception's ImageNet classes are
not a dataset's classes, so every metric has a classifier trained with the jaxgen
trainer on the dataset itself. It is trained once and cached under a key made of the
dataset and the classifier's config; its test accuracy travels with every metric so a
weak extractor is visible. With `eval.extractor=inception` the FID family of metrics
runs on Inception-v3 features from a local weights file instead (`inception.py`);
class-based metrics always use the classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxgen import parallel
from jaxgen.config import ConfigError
from jaxgen.data.sources import DataSpec, Split

log = logging.getLogger("jaxgen")

RECORD_FILE = "extractor.json"
# Part of the cache key beside the config: bump it whenever the classifier's code (model,
# objective, training) changes what a given config trains, so no stale extractor is reused.
CLASSIFIER_VERSION = 1
WEIGHT_KEYS = ("family", "seed", "data", "model", "train")


@dataclasses.dataclass
class Extractor:
    """apply(images [B, H, W, C] in [0, 1], batch-sharded) -> {"features" [B, D],
    "label" int32 [B]}, jit-compiled, replicated outputs."""
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


def classifier_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The extractor's training config: the run's dataset, nothing else of the run."""
    from jaxgen.objectives.classifier import default_config
    c = default_config()
    for key in ("source", "name", "data_dir"):
        c.data[key] = config.data[key]
    c.train.num_steps = config.eval.extractor_steps
    # Its own seed, not the run's: every run on a dataset shares one extractor.
    c.seed = 0
    if jax.device_count() > c.train.batch_size:
        c.train.batch_size = jax.device_count()
    c.eval.batch_size = c.train.batch_size * 2
    return c


def classifier_directory(config: ml_collections.ConfigDict) -> str:
    c = classifier_config(config)
    # Only what decides the weights: a new eval.* or sample.* key in the base config must not
    # send every user through a retraining of an identical classifier.
    tree = c.to_dict()
    trained_by = {k: tree[k] for k in WEIGHT_KEYS}
    key = f"v{CLASSIFIER_VERSION}:{json.dumps(trained_by, sort_keys=True)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    dataset = "-".join(filter(None, (c.data.source, c.data.name)))
    return os.path.join(cache_root(config), f"classifier-{dataset}-{digest}")


@contextlib.contextmanager
def _exclusive(path: str):
    """One process per host trains a given extractor; others wait, then reuse it.

    Multi-process jobs train it together (the trainer is collective), so only
    single-process runs take the lock.
    """
    if jax.process_count() > 1:
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


def load_classifier(config: ml_collections.ConfigDict, splits: dict[str, Split]) -> Extractor:
    """The dataset's classifier, trained (with the jaxgen trainer) on first use."""
    from jaxgen import trainer as trainer_lib
    from jaxgen.checkpoint import Checkpointer
    from jaxgen.cli import CONFIG_FILE, write_json_atomic
    from jaxgen.models.classifier import predict
    from jaxgen.objectives.classifier import ClassifierFamily

    c = classifier_config(config)
    directory = classifier_directory(config)
    family = ClassifierFamily(c, DataSpec.of(splits["train"]))
    record_path = os.path.join(directory, RECORD_FILE)
    with _exclusive(directory):
        if not os.path.isfile(record_path):
            if parallel.is_primary():  # the directory is an ordinary workdir
                write_json_atomic(os.path.join(directory, CONFIG_FILE), json.loads(c.to_json()))
            log.info("training the evaluation classifier in %s (%d steps, cached afterwards)",
                     directory, c.train.num_steps)
            state = trainer_lib.train(c, directory, family, splits)
            accuracy = trainer_lib.Trainer(c, family, splits).evaluate(state)["accuracy"]
            if parallel.is_primary():
                write_json_atomic(record_path, {"test_accuracy": accuracy,
                                                "config": json.loads(c.to_json())})
            if jax.process_count() > 1:  # the others read the record process 0 wrote
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("jaxgen extractor trained")
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        trainer = trainer_lib.Trainer(c, family, splits)
        checkpointer = Checkpointer(os.path.join(directory, "checkpoints"), c.checkpoint.keep)
        restored = checkpointer.restore_latest(trainer.abstract_state())
        checkpointer.close()
    if restored is None:
        raise ConfigError(f"the evaluation classifier in {directory} has no readable checkpoint; "
                          "delete the directory to retrain it")
    params = restored[0].params
    mesh = trainer.mesh
    compiled = jax.jit(lambda p, x: predict(family.model, p, x),
                       in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                       out_shardings=parallel.replicated(mesh))
    return Extractor(name="jaxgen-classifier", apply=lambda images: compiled(params, images),
                     num_classes=family.num_classes, test_accuracy=float(record["test_accuracy"]),
                     directory=directory)


def to_unit_range(images: jax.Array, value_range: str) -> jax.Array:
    """A family's images -> [0, 1], clipped: what every extractor takes."""
    if value_range == "symmetric":
        images = (images + 1.0) / 2.0
    return jnp.clip(images, 0.0, 1.0)
