"""Experiment configs: loading, command-line overrides, validation and the run record.

The CLI syntax is that of the Flax examples (`--config=experiments/NAME.py[:ARG]
--config.KEY=VALUE`). We parse it ourselves rather than through
`ml_collections.config_flags` because that module answers an unknown key with a
traceback; here every mistake is a one-line `ConfigError`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config file, override or value that cannot be used."""


# Keys a workdir's config may change between a run and its resumption: they
# decide how long and how often, never what is computed per step.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.log_every_steps",
    "checkpoint.",
    "eval.",
    "sample.",
)


def base_config() -> ml_collections.ConfigDict:
    """Keys every experiment has; experiment files fill in and extend them."""
    c = ml_collections.ConfigDict()
    c.family = ""  # registry name ("vae", "ae") or "package.module:Factory"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "digits"  # digits | tfds | idx
    c.data.name = ""  # tfds name, e.g. "fashion_mnist"
    c.data.data_dir = ""  # tfds data_dir, or the folder of IDX files for source=idx
    c.data.binarize = False  # dynamic binarisation: a fresh Bernoulli draw per step
    c.data.dequantize = False  # uniform dequantisation (Theis et al. 2016)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.batch_size = 128  # global, over all devices of all hosts
    c.train.learning_rate = 1e-3
    c.train.weight_decay = 0.0
    c.train.grad_clip_norm = 0.0  # 0 disables clipping
    c.train.ema_decay = 0.0  # 0 disables the EMA of parameters
    c.train.log_every_steps = 50

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 500
    c.eval.batch_size = 256
    c.eval.num_examples = 0  # 0: the whole test split
    # Sample metrics (jaxgen.evaluate): FID, KID, precision/recall, mode coverage.
    c.eval.num_samples = 10000  # 0: likelihood metrics only
    c.eval.sample_batch_size = 500  # global, over all devices
    c.eval.extractor = "classifier"  # classifier | inception (FID-family features only)
    c.eval.inception_weights = ""  # local .npz of Inception-v3 weights; never downloaded
    c.eval.extractor_steps = 3000  # training steps of the dataset's classifier
    c.eval.extractor_dir = ""  # cache of trained classifiers; "" = $JAXGEN_CACHE/extractors
    c.eval.pr_k = 3  # k of the k-NN manifolds of precision/recall
    c.eval.kid_block_size = 1000
    c.eval.coverage_threshold = 0.1  # covered: share >= threshold * the data's share
    # Samples whose FID, recall, coverage... are logged at every eval step of training (the
    # same z each time: curves over training); 0: off.
    c.eval.track_samples = 0

    c.sample = ml_collections.ConfigDict()
    c.sample.every_steps = 500
    c.sample.num = 64

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.keep = 3

    c.model = ml_collections.ConfigDict()
    return c


def load(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Loads `experiments/NAME.py[:ARG]` and applies `KEY=VALUE` overrides.

    Raises:
      ConfigError: missing file, no get_config, unknown key or badly typed value.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_jaxgen_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep:
            raise ConfigError(f"override --config.{override} has no '=VALUE'")
        set_value(config, key, text)
    return config


def set_value(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets `config[key]` from its command-line text, keeping the field's type."""
    *parents, leaf = key.split(".")
    node = config
    for depth, name in enumerate(parents):
        if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
            raise ConfigError(f"unknown config key '{'.'.join(parents[:depth + 1])}'")
        node = node[name]
    if leaf not in node:
        raise ConfigError(f"unknown config key '{key}' (known under this section: "
                          f"{', '.join(sorted(node.keys()))})")
    current = node[leaf]
    node[leaf] = _parse_like(key, current, text)


def _parse_like(key: str, current: Any, text: str) -> Any:
    kind = type(current)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"config key '{key}' expects {kind.__name__}, got '{text}'") from None
    if current is not None and isinstance(current, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"config key '{key}' expects a tuple, got '{text}'")
        return tuple(value)
    return value


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int) -> None:
    """Checks what does not depend on the family; raises ConfigError."""
    if not config.family:
        raise ConfigError("config.family is empty: name a model family, e.g. 'vae'")
    if config.data.source not in ("digits", "tfds", "idx"):
        raise ConfigError(f"data.source must be digits, tfds or idx, got '{config.data.source}'")
    if config.data.source == "tfds" and not config.data.name:
        raise ConfigError("data.source=tfds needs data.name (e.g. fashion_mnist)")
    for key in ("train.num_steps", "train.batch_size", "eval.batch_size",
                "eval.sample_batch_size", "eval.extractor_steps", "checkpoint.every_steps",
                "checkpoint.keep", "train.log_every_steps", "eval.every_steps",
                "sample.every_steps"):
        section, name = key.split(".")
        if config[section][name] <= 0:
            raise ConfigError(f"{key} must be positive, got {config[section][name]}")
    for key in ("train.batch_size", "eval.batch_size", "eval.sample_batch_size"):
        section, name = key.split(".")
        size = config[section][name]
        if size % num_devices:
            raise ConfigError(f"{key}={size} is not divisible by the {num_devices} devices")
        if size % num_processes:
            raise ConfigError(f"{key}={size} is not divisible by the {num_processes} processes")
    if config.eval.extractor not in ("classifier", "inception"):
        raise ConfigError(f"eval.extractor must be classifier or inception, got "
                          f"'{config.eval.extractor}'")
    if config.eval.num_samples < 0 or config.eval.pr_k < 1 or config.eval.kid_block_size < 2:
        raise ConfigError("eval.num_samples must be >= 0, eval.pr_k >= 1, "
                          "eval.kid_block_size >= 2")
    if not 0.0 <= config.train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {config.train.ema_decay}")


def require(section: ml_collections.ConfigDict, prefix: str, keys: tuple[str, ...]) -> None:
    """Raises ConfigError naming the first of `keys` missing from a config section."""
    for key in keys:
        if key not in section:
            raise ConfigError(f"config key '{prefix}.{key}' is required by this family")


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses to continue a workdir with a config that changes what a step computes."""
    new = flatten(json.loads(config.to_json()))
    old = flatten(saved)
    changed = [k for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_KEYS)]
    if changed:
        key = changed[0]
        raise ConfigError(f"workdir {workdir} was made with {key}={old.get(key)!r}, now "
                          f"{new.get(key)!r} ({len(changed)} keys differ); use a new workdir")


def fill_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds keys of base_config() that a config saved by an older jaxgen lacks."""
    def fill(node, defaults):
        for key, value in defaults.items():
            if key not in node:
                node[key] = value
            elif isinstance(value, ml_collections.ConfigDict) and isinstance(
                    node[key], ml_collections.ConfigDict):
                fill(node[key], value)
    fill(config, base_config())
    return config


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_record() -> dict[str, Any]:
    """Versions of the code and libraries, so that a workdir says what made it."""
    packages = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy",
                 "ml_collections", "tensorflow-datasets", "scikit-learn"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git": _git_state(root),
        "argv": sys.argv,
    }


def _git_state(root: str) -> dict[str, Any] | None:
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}
