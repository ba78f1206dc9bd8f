"""The wiring of the entry points: a config and its data become a family, a trainer, a
restored state; the evaluator gets its extractors and the trainer its evaluation hooks.

This module sits beside the CLIs, above families/, eval/ and the trainer, and is the only
place that joins them: the evaluator never imports the trainer (it receives a sample
function), the trainer never imports a family or the evaluator (it receives hooks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxgen import families, pretrained
from jaxgen.core import config as config_lib, config_keys, contract, parallel, rng as rng_lib
from jaxgen.core.contract import Sampler
from jaxgen.core.state import TrainState
from jaxgen.data import captions, sources
from jaxgen.data.ranges import to_unit_range
from jaxgen.engine import restore
from jaxgen.eval import (extractor as extractor_lib, inception, path_length, prompts, runner,
                         translation)
from jaxgen.eval.extractor import Extractor
from jaxgen.families import classifier
from jaxgen.pictures import latent
from jaxgen.training import trainer as trainer_lib, workdir as workdir_lib

log = logging.getLogger("jaxgen")


def prepare_config(config: ml_collections.ConfigDict, from_workdir: bool = False):
    """(splits, family) of a config checked against the devices and the data; touches no
    file. from_workdir: the config came from a workdir, whose family may not be code from
    outside jaxgen (`families.build`)."""
    config_lib.validate(config, jax.device_count(), jax.process_count())
    splits = sources.from_config(config.data)
    if config.train.batch_size > len(splits["train"]):
        raise config_lib.ConfigError(f"train.batch_size={config.train.batch_size} exceeds the "
                                     f"{len(splits['train'])} training examples")
    if config.data.binarize and config.data.dequantize:
        raise config_lib.ConfigError("data.binarize and data.dequantize exclude each other")
    return splits, restore.build_family(config, sources.DataSpec.of(splits["train"]),
                                        from_workdir)


# The evaluation classifier: trained by the trainer on first use, cached for every run on
# the dataset.

# Part of the cache key beside the config: bump it whenever the classifier's code (model,
# objective, training) changes what a given config trains, so no stale extractor is reused.
CLASSIFIER_VERSION = 1
WEIGHT_KEYS = ("family", "seed", "data", "model", "train")


def classifier_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The extractor's training config: the run's dataset, nothing else of the run."""
    c = classifier.default_config()
    for key in ("source", "name", "data_dir", "synthetic_shape", "synthetic_size",
                "synthetic_classes", *LATER_DATA_KEYS):
        c.data[key] = config.data.get(key, c.data[key])
    # Every class and every part: a run on some classes of a dataset (or a part of it) is
    # judged by the classifier of the whole dataset, e.g. target-class accuracy.
    c.data.classes, c.data.part = (), (0, 1)
    c.train.num_steps = config.eval.extractor_steps
    # Its own seed, not the run's: every run on a dataset shares one extractor.
    c.seed = 0
    c.eval.batch_size = c.train.batch_size * 2
    return c


# train.* keys that change the weights, added after the first classifier caches were written:
# at these defaults a classifier trains as it did before they existed.
LATER_WEIGHT_KEY_DEFAULTS = {"compute_dtype": "float32", "lr_schedule": "constant",
                             "warmup_steps": 0, "lr_end_fraction": 0.0, "decay_start_step": 0,
                             "dropout_prng": "threefry", "ema_warmup": False}
# data.* keys added after the first caches: left out of the key at their defaults.
LATER_DATA_KEYS = ("pad_to", "transform", "image_size", "channels", "on_bad_file",
                   "test_fraction", "tfds_splits")


def classifier_directory(config: ml_collections.ConfigDict) -> str:
    c = classifier_config(config)
    # Only what decides the weights: a new eval.* or sample.* key in the base config must not
    # send every user through a retraining of an identical classifier.
    tree = c.to_dict()
    # Keys added since caches were first written must not move them: settings that never
    # change the weights are left out, the others while they hold their defaults.
    for key in ("deterministic", "profile_steps"):
        tree["train"].pop(key, None)
    for key, default in LATER_WEIGHT_KEY_DEFAULTS.items():
        if tree["train"].get(key) == default:
            tree["train"].pop(key)
    defaults = config_lib.base_config().data
    for key in (*LATER_DATA_KEYS, "classes", "part"):
        if tree["data"].get(key) == defaults[key] or (
                isinstance(defaults[key], tuple) and tuple(tree["data"][key]) == defaults[key]):
            tree["data"].pop(key)
    if c.data.source != "synthetic":
        tree["data"] = {k: v for k, v in tree["data"].items() if not k.startswith("synthetic_")}
    dataset = "-".join(filter(None, (c.data.source, c.data.name)))
    return extractor_lib.cache_directory(extractor_lib.cache_root(config), dataset,
                                         {k: tree[k] for k in WEIGHT_KEYS}, CLASSIFIER_VERSION)


def evaluation_classifier(config: ml_collections.ConfigDict,
                          splits: dict[str, sources.Split]) -> Extractor:
    """The dataset's classifier, trained (with the jaxgen trainer) on first use.

    Its training batch is fixed (the cache key holds it), so it trains on the most devices
    that split it evenly (`parallel.devices_dividing`): the same classifier on any machine.
    A cache that holds it already may be read-only."""
    c = classifier_config(config)
    directory = classifier_directory(config)
    family = classifier.ClassifierFamily(c, sources.DataSpec.of(splits["train"]))
    record_path = os.path.join(directory, extractor_lib.RECORD_FILE)
    if not os.path.isfile(record_path):  # the record is written last: present means trained
        try:
            workdir_lib.check_usable(directory, write=True)
        except config_lib.ConfigError as e:
            raise config_lib.ConfigError(
                f"the evaluation classifier must be trained into the extractor cache "
                f"($JAXGEN_CACHE or eval.extractor_dir), which is not usable: {e}") from None
    with extractor_lib.exclusive(directory, wait=not os.path.isfile(record_path)):
        if not os.path.isfile(record_path):
            if parallel.is_primary():  # the directory is an ordinary workdir
                workdir_lib.write_config(directory, c)
            log.info("training the evaluation classifier in %s (%d steps, cached afterwards)",
                     directory, c.train.num_steps)
            mesh = parallel.make_mesh(parallel.devices_dividing(c.train.batch_size))
            state = trainer_lib.train(c, directory, family, splits, mesh=mesh)
            accuracy = trainer_lib.Trainer(c, family, splits).evaluate(state)["accuracy"]
            if parallel.is_primary():
                workdir_lib.write_json_atomic(record_path, {"test_accuracy": accuracy,
                                                            "config": json.loads(c.to_json())})
            if jax.process_count() > 1:  # the others read the record process 0 wrote
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("jaxgen extractor trained")
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        try:
            run = restore.load(directory, config=c, splits=splits, family=family)
        except config_lib.ConfigError:
            raise config_lib.ConfigError(
                f"the evaluation classifier in {directory} has no readable checkpoint; "
                "delete the directory to retrain it") from None
    return extractor_lib.classifier_extractor(family.model, run.state.params,
                                              float(record["test_accuracy"]), directory,
                                              family.num_labels)


def load_extractors(config: ml_collections.ConfigDict,
                    splits: dict[str, sources.Split]) -> dict[str, Extractor]:
    """{"classes": the dataset classifier, "features": the FID feature extractor}."""
    classes = evaluation_classifier(config, splits)
    if config.eval.extractor == "classifier":
        return {"classes": classes, "features": classes}
    return {"classes": classes,
            "features": inception.load_inception(config.eval.inception_weights)}


def domain_config(config: ml_collections.ConfigDict, which: str) -> ml_collections.ConfigDict:
    """A two-domain run's config with data = domain `which` ("a" or "b") alone: what that
    domain's evaluation classifier is keyed and trained by."""
    c = config.copy_and_resolve_references()
    section = config.data[f"domain_{which}"]
    for key in config_keys.SOURCE_KEYS:
        c.data[key] = section[key]
    return c


def domain_extractors(config: ml_collections.ConfigDict) -> dict[str, dict[str, Extractor]]:
    """{"a": extractors, "b": extractors} (`load_extractors`) of each domain's whole dataset
    (every class and part, the domain's transform): Fashion-MNIST's classifier for a class
    of it, a classifier of inverted Fashion-MNIST for the inverted domain."""
    out = {}
    for which in ("a", "b"):
        c = domain_config(config, which)
        out[which] = load_extractors(c, sources.from_config(classifier_config(c).data))
    return out


def translation_relation(config: ml_collections.ConfigDict) -> translation.Relation:
    """What the two domains' configs say of their relation: B = T(A) when both come from
    one dataset and only B is transformed; shared classes when neither keeps some only."""
    a, b = config.data.domain_a, config.data.domain_b
    same = all(a[k] == b[k] for k in config_keys.SOURCE_KEYS
               if k not in ("classes", "part", "transform"))
    truth = None
    if same and a.transform == "none" and b.transform != "none":
        def truth(images, direction, kind=b.transform):
            return sources.transform(images, kind, 1.0, inverse=direction == "ba")
    return translation.Relation(truth=truth, shared_classes=same and not a.classes
                                and not b.classes and a.transform == "none",
                                target_classes={"a": tuple(a.classes), "b": tuple(b.classes)})


def translation_metrics(trainer: trainer_lib.Trainer, state: TrainState) -> dict[str, float]:
    """`eval.translation` metrics of a Translator on eval.num_samples test images per
    direction."""
    config, family = trainer.config, trainer.family
    compiled = jax.jit(lambda s, x, d: to_unit_range(family.translate(
        s, x * 2.0 - 1.0 if family.value_range == "symmetric" else x, d), family.value_range),
        static_argnums=2)

    def translate(images: np.ndarray, direction: str) -> np.ndarray:
        return np.asarray(parallel.fetch(compiled(state, images, direction)))

    return translation.translation_metrics(
        translate, trainer.splits, domain_extractors(config),
        translation_relation(config), config.eval.num_samples, config.eval.sample_batch_size,
        config.eval, config.seed)


def sample_metrics(trainer: trainer_lib.Trainer, state: TrainState, num_samples: int,
                   real: bool = True, extractors: dict[str, Extractor] | None = None) -> dict:
    """The evaluator's sample metrics of a trained state (see `eval.runner.sample_metrics`)."""
    config = trainer.config
    extractors = extractors or load_extractors(config, trainer.splits)
    return runner.sample_metrics(
        trainer.batch_sampler(state, config.eval.sample_batch_size),
        trainer.family.sampling_classes, extractors, trainer.splits, config.eval, config.seed,
        num_samples, real)


def prompt_metrics(trainer: trainer_lib.Trainer, state: TrainState,
                   extractors: dict[str, Extractor], workdir: str) -> dict:
    """Prompt following of a text-to-image run (`eval.prompts`): config.eval.prompt_samples
    samples of each prompt of the suite, with the run's tokenizer and captioner."""
    config, family, splits = trainer.config, trainer.family, trainer.splits
    captioner = captions.Captioner.fit(splits["train"], tuple(config.data.caption_holdout))
    batch_size = config.eval.sample_batch_size
    sampler = trainer.batch_sampler(state, batch_size)
    padded = parallel.padded(batch_size, trainer.mesh)

    def sample(tokens: np.ndarray, b: int) -> np.ndarray:
        rows = np.tile(np.asarray(family.data.empty_prompt, np.int32), (padded, 1))  # padding
        rows[:len(tokens)] = tokens
        local = rows[parallel.process_rows(padded)]
        condition = family.prompt_condition(
            parallel.to_global({"tokens": local}, trainer.mesh)["tokens"])
        return np.asarray(parallel.fetch(sampler(b, condition)))

    return prompts.prompt_following(sample, prompts.suite(captioner),
                                    workdir_lib.read_tokenizer(workdir), extractors["classes"],
                                    captioner, config.eval.prompt_samples, batch_size)


def path_length_metrics(trainer: trainer_lib.Trainer, state: TrainState,
                        extractors: dict[str, Extractor]) -> dict[str, float]:
    """Perceptual path length (`eval.path_length`) of a generator, in Z and, for a
    style-based generator, in W (untruncated): eval.ppl_samples pairs each, on the
    evaluation classifier's features."""
    config, family = trainer.config, trainer.family
    eps, batch_size = config.eval.ppl_epsilon, config.eval.sample_batch_size
    classes = family.sampling_classes
    style_based = isinstance(family, contract.StyleGenerator)

    def pair(key_data, in_w: bool):
        z_rng, t_rng, label_rng, noise_rng = jax.random.split(rng_lib.as_key(key_data), 4)
        z = family.latents(z_rng, 2 * batch_size)
        t = jax.random.uniform(t_rng, (batch_size, 1))
        labels = jax.random.randint(label_rng, (batch_size,), 0, classes) if classes else None
        if in_w:
            both = None if labels is None else jax.numpy.concatenate([labels, labels])
            w0, w1 = jax.numpy.split(family.mapping(state, z, both), 2)
            ends = [w0 + (w1 - w0) * s for s in (t, t + eps)]
        else:
            slerp = jax.vmap(latent.slerp)
            z0, z1 = jax.numpy.split(z, 2)
            zs = [slerp(z0, z1, s)[:, 0] for s in (t, t + eps)]
            if not style_based:
                return [to_unit_range(family.from_latents(state, z, labels), family.value_range)
                        for z in zs]
            ends = [family.mapping(state, z, labels) for z in zs]
        # The same noise for both ends: only the step along the path differs.
        return [to_unit_range(family.synthesis(state, jax.numpy.repeat(
            w[:, None], family.num_ws, axis=1), noise_rng), family.value_range) for w in ends]

    compiled = jax.jit(pair, static_argnums=1)
    num_batches = -(-config.eval.ppl_samples // batch_size)
    root = rng_lib.purpose_key(rng_lib.as_key(state.rng), "path_length")
    features = extractors["classes"].apply
    values = {}
    for space, in_w in (("z", False), ("w", True))[:2 if style_based else 1]:
        def pairs(b: int):
            key = jax.random.key_data(jax.random.fold_in(root, 2 * b + in_w))
            return tuple(np.asarray(x) for x in compiled(key, in_w))
        lengths = path_length.path_lengths(
            pairs, lambda x: np.asarray(features(x)["features"]), num_batches, eps)
        values[f"ppl_{space}"] = path_length.trimmed_mean(lengths[:config.eval.ppl_samples])
    return values


def eval_hooks(config: ml_collections.ConfigDict, family) -> list[trainer_lib.EvalHook]:
    """What the trainer evaluates beside the family's eval_step: the sample metrics of
    eval.track_samples samples (the same z at every eval step: curves over training)."""
    if not (config.eval.track_samples and isinstance(family, Sampler)):
        return []

    def track(trainer: trainer_lib.Trainer, state: TrainState) -> dict[str, float]:
        return sample_metrics(trainer, state, config.eval.track_samples, real=False)["model"]

    return [track]


def settings_tag(saved, config) -> str:
    """The sample.* settings of a sample or evaluate call that differ from the run's own
    config, as a file-name part: "" when none, else e.g. "_guidance_scale=2.0_sampler=ddpm",
    so the outputs of other settings sit beside the run's own instead of overwriting them."""
    parts = []
    for key, value in sorted(config.sample.items()):
        if key in ("every_steps", "num") or saved.get("sample", {}).get(key) == value:
            continue
        if key == "classifier_workdir":
            value = os.path.basename(os.path.normpath(value))
        parts.append(f"_{key}={value}")
    return "".join(parts)


# Pretrained diffusers folders as jaxgen models.

@dataclasses.dataclass
class PretrainedModel:
    """A diffusers folder as a jaxgen diffusion model: config (complete; its data that of
    jaxgen_config.json when the folder has one, has_data), data spec, family, UNet params."""
    config: ml_collections.ConfigDict
    data: sources.DataSpec
    family: Any
    params: dict
    has_data: bool


def pretrained_config(path: str, overrides: list[str] = ()
                      ) -> tuple[pretrained.Folder, ml_collections.ConfigDict]:
    """The folder at `path` (`pretrained.read`) and its diffusion config: the run's own for a
    jaxgen export, else the family's defaults (a class table without the null label); then
    the folder's settings, then `overrides` ('KEY=VALUE'). Touches no device."""
    folder = pretrained.read(path)
    sample = dict(folder.sample)
    model = dict(folder.model)
    if folder.jaxgen_config is not None:
        config = families.complete(config_lib.fill_defaults(
            ml_collections.ConfigDict(folder.jaxgen_config)))
        sample.pop("sampler")  # the run's own sampler settings stay
    else:
        config = families.family_module("diffusion").default_config()
        model["null_label"] = False  # diffusers' class tables have no null label
    for section, values in (("model", model), ("sample", sample)):
        for key, value in values.items():
            config[section][key] = value
    return folder, config_lib.apply_overrides(config, overrides)


def load_pretrained(folder: pretrained.Folder, config: ml_collections.ConfigDict
                    ) -> PretrainedModel:
    """The folder's UNet under `config` (`pretrained_config`): family and parameters."""
    embeds = folder.num_class_embeds
    num_classes = embeds - int(config.model.null_label) if embeds else 0
    if embeds and num_classes < 1:
        raise pretrained.PretrainedError(f"{folder.path}: num_class_embeds={embeds} leaves no "
                                         f"class beside the null label")
    data = sources.DataSpec(folder.image_shape, num_classes, 255)
    family = restore.build_family(config, data)
    shapes = jax.eval_shape(family.init, jax.random.key(0),
                            contract.example_batch(data.image_shape)).params
    params = pretrained.to_flax(folder.tensors, config.model, data.image_shape[0], shapes,
                                folder.weights)
    return PretrainedModel(config, data, family, params, folder.jaxgen_config is not None)
