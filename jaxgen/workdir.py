"""A workdir on disk: the names of its files, atomic JSON, its config and its checkpoints.

The one place that knows the layout of a run's directory:

    config.json         the resolved config (written by the trainer's CLI)
    run_info.jsonl      one record per start: versions of the code and libraries
    checkpoints/<step>  Orbax checkpoints of the train state and the data position
    metrics.jsonl       logged scalars; metrics*.json  evaluations
    samples/            pictures; loss_curves.png; tensorboard/
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

import ml_collections

from jaxgen import config as config_lib
from jaxgen.checkpoint import Checkpointer

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.jsonl"
CHECKPOINTS = "checkpoints"
METRICS_LOG = "metrics.jsonl"
SAMPLES = "samples"
CURVES_FILE = "loss_curves.png"
TENSORBOARD = "tensorboard"


def path(workdir: str, *parts: str) -> str:
    return os.path.join(workdir, *parts)


def write_json_atomic(file: str, payload: Any) -> None:
    """Writes through a temporary file, so a kill never leaves half a JSON file."""
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    tmp = f"{file}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, file)


def has_config(workdir: str) -> bool:
    return os.path.isfile(path(workdir, CONFIG_FILE))


def read_config_dict(workdir: str) -> dict:
    """The saved config as plain JSON; ConfigError if there is none."""
    file = path(workdir, CONFIG_FILE)
    if not os.path.isfile(file):
        raise config_lib.ConfigError(f"no trained run in '{workdir}' (no {CONFIG_FILE})")
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The saved config, with keys added to base_config() since it was written."""
    return config_lib.fill_defaults(ml_collections.ConfigDict(read_config_dict(workdir)))


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    write_json_atomic(path(workdir, CONFIG_FILE), json.loads(config.to_json()))


def append_run_record(workdir: str) -> None:
    with open(path(workdir, RUN_INFO_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(run_record()) + "\n")


def checkpointer(workdir: str, keep: int) -> Checkpointer:
    return Checkpointer(path(workdir, CHECKPOINTS), keep)


def restore_latest(workdir: str, abstract_state: Any, keep: int
                   ) -> tuple[Any, dict[str, int]] | None:
    """(state, data position) of the newest readable checkpoint, or None."""
    manager = checkpointer(workdir, keep)
    try:
        return manager.restore_latest(abstract_state)
    finally:
        manager.close()


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
