"""Orbax checkpoints of the TrainState and the data position, saved asynchronously."""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the last `keep` checkpoints under `directory`; restores the newest readable one.

    A checkpoint that cannot be read (truncated, files missing) is moved aside to
    `<directory>_broken/<step>` with a warning, and the next older one is used.
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
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
                return restored["state"], restored["data"]
            except Exception as e:  # Orbax raises many types for damaged files
                reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                self._set_aside(step, reason)
        return None

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
