"""Orbax checkpoints of the TrainState and the data position, saved asynchronously and
verified by a checksum of every array."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax import lax

from jaxgen.core.config import ConfigError
from jaxgen.core.quiet import only_errors

log = logging.getLogger(__name__)

CHECKSUMS = "checksums"  # the checkpoint item holding array_checksums(state)


class Checkpointer:
    """Keeps the last `keep` checkpoints under `directory`; restores the newest sound one.

    Each checkpoint holds, beside the state and the data position, a checksum of every
    array (`array_checksums`), verified at restore: a flipped bit in an array file makes a
    damaged checkpoint, never silently different parameters.

    A writer (the trainer that holds the workdir's lock) moves a damaged checkpoint
    (unreadable, or arrays that differ from their checksums) aside to
    `<directory>_broken/<step>` with a warning and uses the next older one. A reader
    (`read_only=True`: sample, evaluate, a family loading a frozen network) opens Orbax
    read-only, so it never cleans, deletes or moves anything of a run that may be training,
    and refuses a damaged newest checkpoint (`CheckpointDamagedError`). A readable
    checkpoint whose tree does not match the state this code builds is never moved: that is
    a code or config change, reported as an error. Train-state fields added after a
    checkpoint was written (None until a family uses them) restore as None, and an EMA that
    covered more parameters than the family now averages restores only what it averages.
    """

    def __init__(self, directory: str, keep: int, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self.read_only = read_only
        self.manager = self._open()

    def _open(self) -> ocp.CheckpointManager | None:
        if self.read_only:
            if not os.path.isdir(self.directory):
                return None
            # Opening lists the checkpoints and then reads each one's time: a trainer's
            # max_to_keep may delete one in between. List again, as restore_latest does.
            for attempt in range(5):
                try:
                    with only_errors("absl"):  # Orbax warns that a read-only manager is so
                        return ocp.CheckpointManager(
                            self.directory, options=ocp.CheckpointManagerOptions(
                                read_only=True, save_interval_steps=0, create=False))
                except FileNotFoundError:
                    if attempt == 4:
                        raise CheckpointDamagedError(
                            f"the checkpoints in {self.directory} kept disappearing while "
                            "being listed") from None
        # Only the lock holder writes, so no save of anyone else can be in progress: the
        # temporary directories a killed run left behind are safe to delete.
        try:
            return ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=True, enable_async_checkpointing=True,
                cleanup_tmp_directories=True))
        except Exception as e:
            raise _write_error(e, self.directory, None) or e

    def save(self, step: int, state: Any, data_position: dict[str, int]) -> None:
        """Starts an asynchronous save; returns once the arrays are copied off the devices.

        Raises CheckpointWriteError (one line: the path and the cause) when the disk is full
        or the directory cannot be written; the previous checkpoint stays as it was."""
        self._check_space(step, state)
        checksums = array_checksums(state)
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position),
                **{CHECKSUMS: ocp.args.JsonSave(checksums)}), force=True)
        except Exception as e:
            raise _write_error(e, self.directory, self._committed()) or e

    def _check_space(self, step: int, state: Any) -> None:
        """Refuses a save the disk cannot hold, before Orbax starts it: a save that fails
        halfway floods the log from its writer threads. The arrays' size uncompressed plus
        room for metadata bounds what a checkpoint takes."""
        self.wait()  # Orbax waits for the previous save anyway; then the disk is settled
        needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + _METADATA_BYTES
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            committed = self._committed()
            kept = f"the last complete checkpoint is step {committed}" \
                if committed is not None else "there is no complete checkpoint"
            raise CheckpointWriteError(
                f"cannot write checkpoint {step} to {self.directory}: no space left on device "
                f"({free / 2**20:.1f} MiB free, a checkpoint takes up to "
                f"{needed / 2**20:.1f} MiB); {kept}")

    def latest_step(self) -> int | None:
        return None if self.manager is None else self.manager.latest_step()

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, int]] | None:
        """(state, data_position) of the newest sound checkpoint, or None if there is none."""
        for _ in range(5):  # a reader retries when the trainer deleted what it listed
            if self.manager is None:
                return None
            vanished = False
            for step in sorted(self.manager.all_steps(), reverse=True):
                try:
                    return self._restore(step, abstract_state)
                except Exception as e:  # Orbax raises many types for damaged files
                    reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                    if _is_structure_mismatch(e):
                        raise CheckpointMismatchError(
                            f"checkpoint {step} in {self.directory} holds another train-state "
                            f"tree than this code builds ({reason.strip()}); nothing was "
                            "moved") from None
                    if not self.read_only:
                        self._set_aside(step, reason)
                        continue
                    if not os.path.isdir(os.path.join(self.directory, str(step))):
                        vanished = True  # the trainer's max_to_keep removed it: list again
                        break
                    raise CheckpointDamagedError(
                        f"checkpoint {step} in {self.directory} is damaged ({reason.strip()}); "
                        "readers change nothing: continuing the run with jaxgen.train sets "
                        "it aside") from None
            if not vanished:
                return None
            self.manager.close()
            self.manager = self._open()
        raise CheckpointDamagedError(f"the checkpoints in {self.directory} kept disappearing "
                                     "while being read")

    def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, int]]:
        # Checkpoints written before checksums existed restore unverified.
        verified = os.path.isdir(os.path.join(self.directory, str(step), CHECKSUMS))
        extra = {CHECKSUMS: ocp.args.JsonRestore()} if verified else {}

        def restore(manager, state_args):
            restored = manager.restore(step, args=ocp.args.Composite(
                state=state_args, data=ocp.args.JsonRestore(), **extra))
            if verified:
                _verify(restored["state"], restored[CHECKSUMS])
            return restored["state"], restored["data"]

        try:
            return restore(self.manager, ocp.args.StandardRestore(abstract_state))
        except Exception as e:
            if not _is_structure_mismatch(e):
                raise
            mismatch = e
        saved = _leaf_paths(self.manager.item_metadata(step)["state"])
        wanted = _leaf_paths(abstract_state)
        missing, extra_paths = sorted(wanted - saved), sorted(saved - wanted)
        # What an older checkpoint may hold beyond this code's state: an EMA of parameters
        # that are no longer averaged (a GAN's discriminator). Anything else is a mismatch.
        if missing or any(path[0] != "ema_params" for path in extra_paths):
            first = missing[0] if missing else extra_paths[0]
            raise ValueError(f"tree structures do not match: {'/'.join(first)} "
                             f"{'missing from' if missing else 'only in'} the checkpoint "
                             f"({mismatch})")
        # A manager that has restored this item as a StandardSave refuses other restore
        # arguments for it; a fresh (read-only) one reads the same files.
        reader = ocp.CheckpointManager(self.directory,
                                       options=ocp.CheckpointManagerOptions(read_only=True))
        try:
            return restore(reader, ocp.args.PyTreeRestore(abstract_state, partial_restore=True))
        finally:
            reader.close()

    def _set_aside(self, step: int, reason: str) -> None:
        broken = f"{self.directory}_broken"
        os.makedirs(broken, exist_ok=True)
        target = os.path.join(broken, str(step))
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(os.path.join(self.directory, str(step)), target)
        log.warning("checkpoint %d is unreadable (%s); moved to %s", step, reason, target)
        self.manager.reload()

    def _committed(self) -> int | None:
        steps = [int(d) for d in os.listdir(self.directory) if d.isdigit()] if os.path.isdir(
            self.directory) else []
        return max(steps, default=None)

    def wait(self) -> None:
        """Blocks until the last save is on disk; CheckpointWriteError if it failed there."""
        if self.manager is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise _write_error(e, self.directory, self._committed()) or e

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()


class CheckpointMismatchError(ConfigError):
    """A readable checkpoint of another state structure than the code builds."""


class CheckpointDamagedError(ConfigError):
    """A reader met a damaged newest checkpoint (unreadable, or arrays that differ from
    their checksums)."""


class CheckpointWriteError(ConfigError):
    """A checkpoint could not be written: a full disk, a read-only directory."""


class ChecksumMismatchError(ValueError):
    """Restored arrays that differ from the checksums written beside them."""


_METADATA_BYTES = 256 * 1024

# Disk conditions that end a run with one line rather than a traceback.
_WRITE_FAILURES = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
                   errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}


def _write_error(error: Exception, directory: str, committed: int | None
                 ) -> CheckpointWriteError | None:
    """A CheckpointWriteError for an exception caused by the disk; None for anything else.

    Orbax reports a failed write as an OSError, or (from TensorStore) as a ValueError whose
    text carries the OS's message and RESOURCE_EXHAUSTED."""
    cause = None
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno in _WRITE_FAILURES:
            cause = _WRITE_FAILURES[e.errno]
            break
        text = str(e)
        for code, words in _WRITE_FAILURES.items():
            if os.strerror(code) in text or (code == errno.ENOSPC and "RESOURCE_EXHAUSTED" in text):
                cause = words
                break
        if cause:
            break
    if cause is None:
        return None
    kept = f"the last complete checkpoint is step {committed}" if committed is not None \
        else "there is no complete checkpoint"
    return CheckpointWriteError(f"cannot write checkpoints to {directory}: {cause}; {kept}")


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


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


# Checksums of arrays, computed where the arrays are.

_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """uint32 sum over the array's bits of word_i * w_i (mod 2^32), w_i odd and varying with
    i. One flipped bit changes word_i by +-2^k, so the sum by an odd multiple of 2^k: never
    0 mod 2^32. Exact integer arithmetic: the same on any devices in any summation order."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        words = x.astype(jnp.uint32)
    else:  # 8-byte values become [..., 2] words
        words = lax.bitcast_convert_type(x, _UNSIGNED[x.dtype.itemsize]).astype(jnp.uint32)
    words = words.ravel()
    weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(2654435761) | jnp.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


_checksums = jax.jit(lambda leaves: [_leaf_checksum(x) for x in leaves])


def array_checksums(tree: Any) -> dict[str, str]:
    """{key path: 8 hex digits} of every array leaf of tree."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = jax.device_get(_checksums([leaf for _, leaf in flat]))
    return {jax.tree_util.keystr(path): f"{int(v):08x}" for (path, _), v in zip(flat, values)}


def _verify(state: Any, saved: dict[str, str]) -> None:
    found = array_checksums(state)
    bad = [path for path, value in saved.items() if path in found and found[path] != value]
    if bad:
        raise ChecksumMismatchError(f"{len(bad)} arrays differ from their checksums, first "
                                    f"{bad[0]}: the files changed after they were written")
