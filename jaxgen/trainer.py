"""The training loop shared by every model family. It imports no family.

init or restore -> jit-compiled, buffer-donating steps -> periodic eval, sample grids
and asynchronous checkpoints -> final checkpoint. Host syncs happen only at logging,
evaluation, sampling and checkpoint steps.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen import parallel, viz
from jaxgen.checkpoint import Checkpointer
from jaxgen.data.pipeline import TrainStream, eval_batches
from jaxgen.data.sources import Split
from jaxgen.state import Family, TrainState, ema_update
from jaxgen.writers import Writer, read_metrics

log = logging.getLogger("jaxgen")

# Every random draw of a run descends from one root key through a named purpose.
RNG_PURPOSES = {"train": 0, "init": 1, "eval": 2, "sample": 3}


class NonFiniteLossError(FloatingPointError):
    """A metric became NaN or Inf; raised before anything is saved at that step."""


def purpose_rng(root: jax.Array, purpose: str, index: int | jax.Array = 0) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root, RNG_PURPOSES[purpose]), index)


def root_rng(seed: int) -> jax.Array:
    """uint32 [2] key data: a plain array, so Orbax stores it like any other leaf."""
    return jax.random.key_data(jax.random.key(seed))


def _as_key(key_data: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(key_data)


class Trainer:
    """Compiles a family's functions for a mesh and runs them.

    Args:
      config: the validated experiment config.
      family: any object with the `state.Family` methods.
      splits: {"train": Split, "test": Split}.
    """

    def __init__(self, config: ml_collections.ConfigDict, family: Family,
                 splits: dict[str, Split]):
        self.config = config
        self.family = family
        self.splits = splits
        self.mesh = parallel.make_mesh()
        self.rows = parallel.process_rows(config.train.batch_size)
        self.stream = TrainStream(splits["train"], config.train.batch_size, config.seed, self.rows,
                                  family.value_range, config.data.binarize, config.data.dequantize)
        repl = parallel.replicated(self.mesh)
        data = parallel.batch_sharded(self.mesh)
        self.init_fn = jax.jit(self._init, out_shardings=repl)
        self.step_fn = jax.jit(self._train_step, in_shardings=(repl, data),
                               out_shardings=(repl, repl), donate_argnums=0)
        self.eval_fn = jax.jit(self._eval_sums, in_shardings=(repl, data, None),
                               out_shardings=repl)
        self.sample_fn = jax.jit(self._sample, static_argnums=2, out_shardings=repl)

    # Pure functions, compiled above.

    def _init(self, seed_key: jax.Array, batch: dict[str, jax.Array]) -> TrainState:
        state = self.family.init(purpose_rng(_as_key(seed_key), "init"), batch)
        state = state.replace(step=jnp.zeros((), jnp.int32), rng=seed_key)
        if self.config.train.ema_decay > 0:
            state = state.replace(ema_params=state.params)
        return state

    def _train_step(self, state: TrainState, batch: dict[str, jax.Array]):
        rng = purpose_rng(_as_key(state.rng), "train", state.step)
        new_state, metrics = self.family.train_step(state, batch, rng)
        new_state = new_state.replace(step=state.step + 1)
        if self.config.train.ema_decay > 0:
            new_state = new_state.replace(ema_params=ema_update(
                state.ema_params, new_state.params, self.config.train.ema_decay))
        return new_state, metrics

    def _eval_sums(self, state: TrainState, batch: dict[str, jax.Array], index: jax.Array,
                   step_fn: Callable | None = None):
        rng = purpose_rng(_as_key(state.rng), "eval", index)
        per_example = (step_fn or self.family.eval_step)(state, batch, rng)
        mask = batch["mask"]
        return {k: jnp.sum(v * mask) for k, v in per_example.items()}, jnp.sum(mask)

    def _sample(self, state: TrainState, rng: jax.Array, num: int):
        return self.family.sample(state, _as_key(rng), num)

    # Host-side driving.

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return parallel.to_global(local, self.mesh)

    def init_state(self) -> TrainState:
        return self.init_fn(root_rng(self.config.seed), self.global_batch(self.stream.batch_at(0)))

    def abstract_state(self) -> Any:
        shapes = jax.eval_shape(self.init_fn, root_rng(self.config.seed),
                                self.global_batch(self.stream.batch_at(0)))
        repl = parallel.replicated(self.mesh)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl),
                            shapes)

    def evaluate(self, state: TrainState, step_fn: Callable | None = None,
                 num_examples: int | None = None) -> dict[str, float]:
        """Means over the test split of the family's per-example metrics."""
        fn = self.eval_fn if step_fn is None else jax.jit(
            lambda s, b, i: self._eval_sums(s, b, i, step_fn),
            in_shardings=(parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh), None),
            out_shardings=parallel.replicated(self.mesh))
        totals, count = None, 0.0
        batches = eval_batches(self.splits["test"], self.config.eval.batch_size,
                               parallel.process_rows(self.config.eval.batch_size),
                               self.family.value_range, self.config.data.binarize,
                               self.config.data.dequantize, self.config.seed,
                               self.config.eval.num_examples if num_examples is None
                               else num_examples)
        for index, local in enumerate(batches):
            sums, n = fn(state, self.global_batch(local), jnp.int32(index))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            count = count + n
        totals, count = parallel.fetch((totals, count))
        return {k: float(v) / float(count) for k, v in totals.items()}

    def sample_images(self, state: TrainState, num: int, index: int = 0) -> np.ndarray:
        rng = jax.random.key_data(purpose_rng(_as_key(state.rng), "sample", index))
        return np.asarray(parallel.fetch(self.sample_fn(state, rng, num)))


def train(config: ml_collections.ConfigDict, workdir: str, family: Family,
          splits: dict[str, Split]) -> TrainState:
    """Trains until config.train.num_steps, resuming from the newest checkpoint in workdir."""
    os.makedirs(workdir, exist_ok=True)
    trainer = Trainer(config, family, splits)
    primary = parallel.is_primary()
    log.info("process %d of %d reads rows %d:%d of each global batch of %d",
             jax.process_index(), jax.process_count(), trainer.rows.start, trainer.rows.stop,
             config.train.batch_size)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep)
    writer = Writer(workdir, enabled=primary)
    try:
        state = _restore_or_init(trainer, checkpointer)
        return _loop(trainer, state, checkpointer, writer, workdir)
    finally:
        checkpointer.wait()
        checkpointer.close()
        writer.close()


def _restore_or_init(trainer: Trainer, checkpointer: Checkpointer) -> TrainState:
    restored = checkpointer.restore_latest(trainer.abstract_state())
    if restored is None:
        log.info("no checkpoint: initialising")
        return trainer.init_state()
    state, position = restored
    if position["step"] != int(state.step):
        raise RuntimeError(f"checkpoint data position {position} does not match step {state.step}")
    log.info("resumed from step %d (%s)", int(state.step), position)
    return state


def _loop(trainer: Trainer, state: TrainState, checkpointer: Checkpointer, writer: Writer,
          workdir: str) -> TrainState:
    config = trainer.config
    num_steps = config.train.num_steps
    start = int(state.step)
    pending: list[dict[str, jax.Array]] = []
    last_log = (start, time.perf_counter())
    # A family names the metrics worth a plot (a GAN: both players' losses).
    curve_keys = list(getattr(trainer.family, "curve_metrics", ("loss",)))
    from tqdm import tqdm
    bar = tqdm(total=num_steps, initial=start, disable=not parallel.is_primary(),
               unit="step", dynamic_ncols=True, mininterval=1.0)
    try:
        for step in range(start, num_steps):
            batch = trainer.global_batch(trainer.stream.batch_at(step))
            state, metrics = trainer.step_fn(state, batch)
            pending.append(metrics)
            done = step + 1
            bar.update(1)
            last = done == num_steps
            log_now = done % config.train.log_every_steps == 0 or last
            save_now = done % config.checkpoint.every_steps == 0 or last
            if log_now or save_now:
                means = _check_finite(pending, done, checkpointer)
                pending = []
                if log_now:
                    now = time.perf_counter()
                    rate = (done - last_log[0]) / max(now - last_log[1], 1e-9)
                    last_log = (done, now)
                    means.update(steps_per_sec=rate, images_per_sec=rate * config.train.batch_size)
                    writer.scalars(done, "train", means)
                    bar.set_postfix({k: f"{means[k]:.4g}" for k in curve_keys if k in means})
            # Sampling is optional in the contract: a classifier has no sampler.
            sampler = hasattr(trainer.family, "sample")
            if done % config.eval.every_steps == 0 or last:
                values = trainer.evaluate(state)
                if sampler and config.eval.track_samples:
                    from jaxgen.eval.runner import sample_metrics
                    values.update(sample_metrics(trainer, state, trainer.splits,
                                                 config.eval.track_samples, real=False)["model"])
                writer.scalars(done, "test", values)
            if sampler and (done % config.sample.every_steps == 0 or last):
                _write_samples(trainer, state, writer, workdir, done)
                _write_curves(workdir, curve_keys)
            if save_now:
                checkpointer.save(done, state, trainer.stream.position(done))
    finally:
        bar.close()
    _write_curves(workdir, curve_keys)
    writer.flush()
    return state


def _write_curves(workdir: str, keys: list[str]) -> None:
    if parallel.is_primary():
        viz.curves(os.path.join(workdir, "loss_curves.png"), read_metrics(workdir, "train"),
                   keys, "train " + ", ".join(keys))


def _check_finite(pending: list[dict[str, jax.Array]], done: int,
                  checkpointer: Checkpointer) -> dict[str, float]:
    """Means of the metrics since the last check; raises at the first non-finite step."""
    history = parallel.fetch(pending)
    first = done - len(history) + 1
    for offset, metrics in enumerate(history):
        bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
        if bad:
            checkpointer.wait()
            raise NonFiniteLossError(
                f"non-finite {bad[0]} ({float(np.asarray(metrics[bad[0]]).mean())}) at step "
                f"{first + offset}; last good checkpoint: step {checkpointer.latest_step()}")
    return {k: float(np.mean([m[k] for m in history])) for k in history[0]}


def _write_samples(trainer: Trainer, state: TrainState, writer: Writer, workdir: str,
                   step: int) -> None:
    num = trainer.config.sample.num
    images = viz.to_uint8(trainer.sample_images(state, num), trainer.family.value_range)
    if parallel.is_primary():
        mosaic = viz.grid(images, rows=int(math.sqrt(num)))
        viz.save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), mosaic)
        writer.image(step, "samples", mosaic)
