"""Experiment configs: the declared keys, loading, command-line overrides and validation.

The CLI syntax is that of the Flax examples (`--config=experiments/NAME.py[:ARG]
--config.KEY=VALUE`). We parse it ourselves rather than through
`ml_collections.config_flags` because that module answers an unknown key with a
traceback; here every mistake is a one-line `ConfigError`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import sys
import traceback
from typing import Any, Sequence

import ml_collections

from jaxgen.core.config_keys import BASE_KEYS, Check, Key, Keys


class ConfigError(ValueError):
    """A config file, override or value that cannot be used."""


# Keys a workdir's config may change between a run and its resumption: they
# decide how long and how often, never what is computed per step.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.deterministic",
    "train.profile_steps",
    "train.log_every_steps",
    "checkpoint.",
    "eval.",
    "sample.",
)


def base_config() -> ml_collections.ConfigDict:
    """Keys every experiment has (BASE_KEYS); experiment files fill in and extend them."""
    c = ml_collections.ConfigDict()
    for name, key in BASE_KEYS.items():
        section, _, leaf = name.rpartition(".")
        if section and section not in c:
            c[section] = ml_collections.ConfigDict()
        (c[section] if section else c)[leaf] = key.default
    c.model = ml_collections.ConfigDict()
    return c


def load_module(path: str, name: str = "experiment"):
    """Executes an experiment file by path (experiments are files, not an installed package):
    the one loader of `--config`, `jaxgen.sweep` and `sibling`. ConfigError names the file and
    line of any error raised while it runs."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"_jaxgen_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # any error of the user's file: one line naming where
        raise located_error(path, e) from None
    return module


def located_error(path: str, error: Exception) -> ConfigError:
    """error, raised while running the experiment file `path` (its import or a function of
    it), as one line `FILE:LINE: Type: message`: the innermost frame of the user's own files
    (path, or an experiment it builds on), not of jaxgen or the Python installation."""
    if isinstance(error, SyntaxError) and error.lineno is not None:
        return ConfigError(f"{path}:{error.lineno}: {type(error).__name__}: {error}")
    not_the_users = tuple(os.path.join(os.path.abspath(p), "") for p in {
        os.path.dirname(__file__), sys.prefix, sys.base_prefix, sys.exec_prefix})
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not os.path.abspath(f.filename).startswith(not_the_users)
              and not f.filename.startswith("<")]
    if not frames:
        return ConfigError(f"{path}: {type(error).__name__}: {error}")
    where = frames[-1]
    shown = path if os.path.abspath(where.filename) == os.path.abspath(path) else where.filename
    return ConfigError(f"{shown}:{where.lineno}: {type(error).__name__}: {error}")


def sibling(file: str, name: str):
    """Another experiment file in the same folder as `file`, loaded by path: how an
    experiment builds on another (`sibling(__file__, "ddpm_fashion_mnist").get_config()`)."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(file)), f"{name}.py"), name)


def take_shared(target: ml_collections.ConfigDict, source: ml_collections.ConfigDict
                ) -> ml_collections.ConfigDict:
    """target with every key it shares with source set to source's value (the family stays
    target's): an experiment built on another family's experiment."""
    for section, values in source.items():
        if isinstance(values, ml_collections.ConfigDict) and section in target:
            for key, value in values.items():
                if key in target[section]:
                    target[section][key] = value
    return target


def load(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Loads `experiments/NAME.py[:ARG]` and applies `KEY=VALUE` overrides.

    Raises:
      ConfigError: missing file, no get_config, unknown key or badly typed value.
    """
    path, _, arg = spec.partition(":")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ConfigError as e:  # a sibling experiment's error, located already
        raise ConfigError(f"{spec}: {e}") from None
    except ValueError as e:  # an experiment's way of refusing its ARG
        raise ConfigError(f"{spec}: {e}") from None
    except Exception as e:  # a mistake in get_config: one line naming where, as at import
        raise located_error(path, e) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, not an "
                          "ml_collections.ConfigDict (start from jaxgen.config.base_config())")
    return apply_overrides(config, overrides)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]
                    ) -> ml_collections.ConfigDict:
    """Sets each `KEY=VALUE` of overrides in config (in place, and returned)."""
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
        kinds = {type(v) for v in current}
        if kinds == {int} and not all(type(v) is int for v in value):
            raise ConfigError(f"config key '{key}' expects a tuple of integers, got '{text}'")
        if kinds <= {int, float} and kinds and not all(
                type(v) in (int, float) for v in value):
            raise ConfigError(f"config key '{key}' expects a tuple of numbers, got '{text}'")
        return tuple(value)
    return value


def validate(config: ml_collections.ConfigDict, num_devices: int, num_processes: int) -> None:
    """Checks what does not depend on the family; raises ConfigError.

    The training batch is global and must divide by the devices (a padded training batch
    would change the gradient); evaluation and sampling batches are padded to the devices
    instead, so they take any value."""
    if not config.family:
        raise ConfigError("config.family is empty: name a model family, e.g. 'vae'")
    check_keys(config, BASE_KEYS)
    if config.data.source == "tfds" and not config.data.name:
        raise ConfigError("data.source=tfds needs data.name (e.g. fashion_mnist)")
    # Sample metrics need a few samples: KID two, precision/recall pr_k + 1.
    fewest = max(2, config.eval.pr_k + 1)
    for key in ("num_samples", "track_samples"):
        if 0 < config.eval[key] < fewest:
            raise ConfigError(f"eval.{key}={config.eval[key]} is too few for the sample metrics "
                              f"(KID and precision/recall with eval.pr_k={config.eval.pr_k}): "
                              f"use 0 or >= {fewest}")
    if config.train.ema_warmup and not config.train.ema_decay:
        raise ConfigError("train.ema_warmup=True warms up an EMA, but train.ema_decay=0 keeps "
                          "none: set train.ema_decay (e.g. 0.999)")
    size = config.train.batch_size
    if size % num_devices:
        # num_devices is a multiple of num_processes: a multiple of it divides by both.
        lower = size // num_devices * num_devices
        options = [v for v in (lower, lower + num_devices) if v > 0]
        raise ConfigError(f"train.batch_size={size} is not divisible by the {num_devices} "
                          f"devices: set --config.train.batch_size="
                          f"{' or '.join(map(str, options))}")


def from_keys(family: str, keys: Keys) -> ml_collections.ConfigDict:
    """base_config() with `family` and every declared key at its default."""
    c = base_config()
    c.family = family
    for name, key in keys.items():
        section, _, leaf = name.rpartition(".")
        node_at(c, section, create=True)[leaf] = key.default
    return c


def node_at(config: ml_collections.ConfigDict, section: str, create: bool = False
            ) -> ml_collections.ConfigDict | None:
    """The section "a" or "a.b" of config ("": config itself); None where it is missing,
    unless create."""
    node = config
    for part in filter(None, section.split(".")):
        if part not in node:
            if not create:
                return None
            node[part] = ml_collections.ConfigDict()
        node = node[part]
    return node


def with_defaults(keys: Keys, **defaults: Any) -> dict[str, Key]:
    """keys with other defaults, for a family that extends another: with_defaults(KEYS,
    **{"model.dropout": 0.0})."""
    unknown = set(defaults) - set(keys)
    if unknown:
        raise KeyError(f"not declared: {sorted(unknown)}")
    return {name: dataclasses.replace(key, default=defaults[name]) if name in defaults else key
            for name, key in keys.items()}


def check_keys(config: ml_collections.ConfigDict, keys: Keys) -> None:
    """Raises ConfigError naming the first declared key that is missing or out of bounds."""
    for name, key in keys.items():
        section, _, leaf = name.rpartition(".")
        node = node_at(config, section)
        if node is None or leaf not in node:
            raise ConfigError(f"config key '{name}' is required by family '{config.family}'")
        value = node[leaf]
        if key.choices and value not in key.choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, key.choices))}, "
                              f"got '{value}'")
        if key.check is not None and not _passes(key.check, value):
            raise ConfigError(f"{name} {key.check.text}, got {value!r}")


def _passes(check: Check, value: Any) -> bool:
    try:
        return bool(check.test(value))
    except TypeError:  # a value of another type than the key's
        return False


def keys_table(keys: Keys) -> str:
    """The declared keys as a Markdown table (the docs' key list)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, key in keys.items():
        meaning = key.help
        if key.choices:
            meaning += f" ({' / '.join(map(str, key.choices))})"
        lines.append(f"| `{name}` | `{key.default!r}` | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


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


def fill_declared(config: ml_collections.ConfigDict, keys: Keys) -> ml_collections.ConfigDict:
    """Adds the declared keys a config saved by an older jaxgen lacks, each with the value
    its absence implies (`Key.implied`)."""
    for name, key in keys.items():
        section, _, leaf = name.rpartition(".")
        node = node_at(config, section, create=True)
        if leaf not in node:
            node[leaf] = key.implied
    return config


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
