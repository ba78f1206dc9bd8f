"""Orbax checkpoints of the TrainState and the data position, saved asynchronously."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxgen.config import ConfigError

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the last `keep` checkpoints under `directory`; restores the newest readable one.

    A checkpoint that cannot be read (truncated, files missing) is moved aside to
    `<directory>_broken/<step>` with a warning, and the next older one is used. A readable
    checkpoint whose tree does not match the state this code builds is never moved: that is
    a code or config change, reported as an error. Train-state fields added after a
    checkpoint was written (None until a family uses them) restore as None, and an EMA that
    covered more parameters than the family now averages restores only what it averages.
    """

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=True,
                                                 cleanup_tmp_directories=True))

    def save(self, step: int, state: Any, data_position: dict[str, int]) -> None:
        """Starts an asynchronous save; returns once the arrays are copied off the devices."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position)),
            force=True)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, int]] | None:
        """(state, data_position) of the newest readable checkpoint, or None if there is none."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return self._restore(step, abstract_state)
            except Exception as e:  # Orbax raises many types for damaged files
                reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                if _is_structure_mismatch(e):
                    raise CheckpointMismatchError(
                        f"checkpoint {step} in {self.directory} holds another train-state tree "
                        f"than this code builds ({reason.strip()}); nothing was moved") from None
                self._set_aside(step, reason)
        return None

    def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, int]]:
        def restore(state_args):
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=state_args, data=ocp.args.JsonRestore()))
            return restored["state"], restored["data"]

        try:
            return restore(ocp.args.StandardRestore(abstract_state))
        except Exception as e:
            if not _is_structure_mismatch(e):
                raise
            mismatch = e
        saved = _leaf_paths(self.manager.item_metadata(step)["state"])
        wanted = _leaf_paths(abstract_state)
        missing, extra = sorted(wanted - saved), sorted(saved - wanted)
        # What an older checkpoint may hold beyond this code's state: an EMA of parameters
        # that are no longer averaged (a GAN's discriminator). Anything else is a mismatch.
        if missing or any(path[0] != "ema_params" for path in extra):
            first = missing[0] if missing else extra[0]
            raise ValueError(f"tree structures do not match: {'/'.join(first)} "
                             f"{'missing from' if missing else 'only in'} the checkpoint "
                             f"({mismatch})")
        # A manager that has restored this item as a StandardSave refuses other restore
        # arguments for it; a fresh one reads the same files.
        reader = ocp.CheckpointManager(self.directory)
        try:
            restored = reader.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(abstract_state, partial_restore=True),
                data=ocp.args.JsonRestore()))
        finally:
            reader.close()
        return restored["state"], restored["data"]

    def _set_aside(self, step: int, reason: str) -> None:
        broken = f"{self.directory}_broken"
        os.makedirs(broken, exist_ok=True)
        target = os.path.join(broken, str(step))
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        log.warning("checkpoint %d is unreadable (%s); moved to %s", step, reason, target)
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


class CheckpointMismatchError(ConfigError):
    """A readable checkpoint of another state structure than the code builds."""


def _is_structure_mismatch(error: Exception) -> bool:
    text = str(error)
    return "tree structures do not match" in text or "Dict key mismatch" in text



def _leaf_paths(tree: Any) -> set[tuple[str, ...]]:
    """The key path of every leaf, as names: a dataclass field, a dict key and a sequence
    index all become strings, so a saved tree and the state's tree compare."""
    def name(entry) -> str:
        for attribute in ("name", "key", "idx"):
            if hasattr(entry, attribute):
                return str(getattr(entry, attribute))
        return str(entry)

    tree = getattr(tree, "tree", tree)  # Orbax's tree metadata wraps the tree
    return {tuple(name(e) for e in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}
