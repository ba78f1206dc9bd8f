"""A workdir on disk: the names of its files, atomic JSON, its config and its checkpoints.

The one place that knows the layout of a run's directory:

    config.json         the resolved config (written by the trainer's CLI)
    tokenizer.json      a text-conditioned run's tokenizer (a vocabulary built from its training
                        captions, or the BPE files of a pretrained text encoder)
    frozen_inputs.json  the SHA-256 of the files of frozen pretrained weights the run reads
                        from outside the workdir (model.text_encoder)
    train.lock          held (an OS lock) by the one trainer writing the workdir
    run_info.jsonl      one record per start: versions of the code and libraries
    checkpoints/<step>  Orbax checkpoints of the train state and the data position
    metrics.jsonl       logged scalars; metrics*.json  evaluations
    samples/            pictures; loss_curves.png; tensorboard/
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from jaxgen.core import config as config_lib
from jaxgen.training.checkpoint import Checkpointer
from jaxgen.text.saved import from_json as tokenizer_from_json, same_vocabulary
from jaxgen.text.tokenizer import TokenizerError

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.jsonl"
FROZEN_INPUTS_FILE = "frozen_inputs.json"
CHECKPOINTS = "checkpoints"
METRICS_LOG = "metrics.jsonl"
SAMPLES = "samples"
CURVES_FILE = "loss_curves.png"
TENSORBOARD = "tensorboard"
LOCK_FILE = "train.lock"
TOKENIZER_FILE = "tokenizer.json"


class WorkdirBusyError(config_lib.ConfigError):
    """Another trainer holds the workdir."""


def path(workdir: str, *parts: str) -> str:
    return os.path.join(workdir, *parts)


def write_json_atomic(file: str, payload: Any) -> None:
    """Writes through a temporary file, so a kill never leaves half a JSON file."""
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    tmp = f"{file}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, file)


def write_tokenizer(workdir: str, tokenizer) -> None:
    """Saves the run's tokenizer; a resumed run must have built the same one (the same
    captions), or its token ids would mean other words."""
    file = path(workdir, TOKENIZER_FILE)
    if os.path.isfile(file):
        if not same_vocabulary(read_tokenizer(workdir), tokenizer):
            raise config_lib.ConfigError(f"the captions of this data give another vocabulary "
                                         f"than the run's {file}: the data, "
                                         f"data.caption_holdout or data.tokenizer changed")
        return
    write_json_atomic(file, json.loads(tokenizer.to_json()))


def read_tokenizer(workdir: str):
    """The run's tokenizer; ConfigError if it has none or it cannot be read."""
    file = path(workdir, TOKENIZER_FILE)
    if not os.path.isfile(file):
        raise config_lib.ConfigError(f"'{workdir}' has no {TOKENIZER_FILE}: not a "
                                     "text-conditioned run")
    try:
        with open(file, encoding="utf-8") as f:
            return tokenizer_from_json(f.read(), file)
    except (OSError, UnicodeDecodeError, TokenizerError) as e:
        raise config_lib.ConfigError(str(e)) from None


def has_config(workdir: str) -> bool:
    return os.path.isfile(path(workdir, CONFIG_FILE))


def read_config_dict(workdir: str) -> dict:
    """The saved config as plain JSON; ConfigError if there is none."""
    file = path(workdir, CONFIG_FILE)
    if not os.path.isfile(file):
        raise config_lib.ConfigError(f"no trained run in '{workdir}' (no {CONFIG_FILE})")
    return read_json_object(file)


def read_json_object(file: str) -> dict:
    """A JSON file holding an object (a config, an evaluation record); ConfigError naming the
    file when it cannot be read or holds something else."""
    try:
        with open(file, encoding="utf-8") as f:
            tree = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise config_lib.ConfigError(f"{file} is not readable JSON ({e})") from None
    if not isinstance(tree, dict):
        raise config_lib.ConfigError(f"{file} holds no JSON object")
    return tree


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The saved config, with keys added to base_config() since it was written."""
    tree = read_config_dict(workdir)
    try:
        return config_lib.fill_defaults(ml_collections.ConfigDict(tree))
    except (TypeError, ValueError, AttributeError) as e:
        raise config_lib.ConfigError(f"{path(workdir, CONFIG_FILE)} is not a jaxgen config "
                                     f"({e})") from None


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    write_json_atomic(path(workdir, CONFIG_FILE), json.loads(config.to_json()))


def file_digests(files: list[str], root: str) -> dict[str, str]:
    """{path relative to root: SHA-256} of files."""
    out = {}
    for file in sorted(files):
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        out[os.path.relpath(file, root)] = digest.hexdigest()
    return out


def check_frozen_inputs(workdir: str, inputs: dict[str, list[str]], write: bool) -> None:
    """inputs: {config key: the files of the frozen weights it names}. The first start records
    their SHA-256 (write); a later start, sample or evaluation with other files is refused,
    since the run's parameters were trained on those weights' outputs."""
    if not inputs:
        return
    file = path(workdir, FROZEN_INPUTS_FILE)
    found = {key: {"path": os.path.abspath(os.path.dirname(files[0])),
                   "sha256": file_digests(files, os.path.dirname(files[0]))}
             for key, files in inputs.items()}
    if not os.path.isfile(file):
        if write:
            write_json_atomic(file, found)
        return
    with open(file, encoding="utf-8") as f:
        recorded = json.load(f)
    for key, now in found.items():
        then = recorded.get(key, {})
        if then.get("sha256") != now["sha256"]:
            raise config_lib.ConfigError(
                f"{key}: the files in '{now['path']}' are not those this run was trained with "
                f"(recorded in {file}, from '{then.get('path', '?')}')")


def append_run_record(workdir: str) -> None:
    with open(path(workdir, RUN_INFO_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps(run_record()) + "\n")


def contents(workdir: str) -> list[str]:
    """What a run has left in workdir, one line per kind of file: the closing summary."""
    lines = []
    steps = sorted(int(d) for d in _listdir(path(workdir, CHECKPOINTS)) if d.isdigit())
    if steps:
        listed = ", ".join(map(str, steps))
        lines.append(f"checkpoints  {path(workdir, CHECKPOINTS)} (steps {listed})")
    for name, what in ((METRICS_LOG, "metrics"), (CURVES_FILE, "curves"),
                       (CONFIG_FILE, "config"), (RUN_INFO_FILE, "versions")):
        if os.path.exists(path(workdir, name)):
            lines.append(f"{what:12s} {path(workdir, name)}")
    pictures = sorted(f for f in _listdir(path(workdir, SAMPLES)) if f.endswith(".png"))
    if pictures:
        lines.append(f"pictures     {path(workdir, SAMPLES)} ({len(pictures)} files, newest "
                     f"{pictures[-1]})")
    if os.path.isdir(path(workdir, TENSORBOARD)):
        lines.append(f"tensorboard  tensorboard --logdir {path(workdir, TENSORBOARD)}")
    return lines


def _listdir(directory: str) -> list[str]:
    return os.listdir(directory) if os.path.isdir(directory) else []


def checkpointer(workdir: str, keep: int) -> Checkpointer:
    """The trainer's checkpointer: it writes, so hold `lock(workdir)` while it is open."""
    return Checkpointer(path(workdir, CHECKPOINTS), keep)


def restore_latest(workdir: str, abstract_state: Any) -> tuple[Any, dict[str, int]] | None:
    """(state, data position) of the newest checkpoint, read without changing anything
    (the run may be training); None when there is none; CheckpointDamagedError when the
    newest is damaged."""
    manager = Checkpointer(path(workdir, CHECKPOINTS), keep=1, read_only=True)
    try:
        return manager.restore_latest(abstract_state)
    finally:
        manager.close()


def check_usable(workdir: str, write: bool, what: str = "workdir") -> None:
    """ConfigError (one line: the path and the cause) unless workdir is (or can become) a
    directory this process can read and, with write, write. `what` names it in the error."""
    existing = os.path.abspath(workdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        verb = "is" if existing == os.path.abspath(workdir) else "lies under"
        raise config_lib.ConfigError(f"{what} {workdir} {verb} a file, not a directory "
                                     f"({existing})")
    if not write:
        return
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise config_lib.ConfigError(f"cannot write to {what} {workdir}: "
                                     f"{e.strerror or e}") from None
    # access(2) answers for the effective user and knows read-only mounts (EROFS).
    if not os.access(workdir, os.W_OK | os.X_OK):
        reason = "Read-only file system" if _read_only_mount(workdir) else "Permission denied"
        raise config_lib.ConfigError(f"cannot write to {what} {workdir}: {reason}")


def _read_only_mount(directory: str) -> bool:
    return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)


# The writer's lock. An flock: the OS releases it when its process ends in any way (a kill,
# a crash), so the next trainer simply takes it over; the file keeps the holder's pid and
# host for the message that refuses a second trainer.
_held: dict[str, list] = {}  # real path -> [open file, depth]: re-entrant in one process


@contextlib.contextmanager
def lock(workdir: str):
    """Holds workdir's writer lock (re-entrant); WorkdirBusyError (one line naming the pid
    and host of the holder) when another process holds it. In a multi-process job process 0
    takes it for all, and every process learns whether it could."""
    key = os.path.realpath(workdir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    handle, holder = None, ""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        handle = open(path(workdir, LOCK_FILE), "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            handle = None
    if _agree(handle is not None) is False:
        raise WorkdirBusyError(f"workdir {workdir} is being trained by {holder or 'another job'}"
                               "; wait for it to end or use another workdir")
    if handle is not None:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
    _held[key] = [handle, 1]
    try:
        yield
    finally:
        del _held[key]
        if handle is not None:
            handle.close()  # releases the flock


def _agree(locked: bool) -> bool:
    """Process 0's `locked`, on every process."""
    if jax.process_count() == 1:
        return locked
    return bool(multihost_utils.broadcast_one_to_all(np.int32(locked)))


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
