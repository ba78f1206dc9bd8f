"""The training loop shared by every model family. It imports no family and no evaluator.

init or restore -> jit-compiled, buffer-donating steps -> periodic actions (training metrics
with the NaN check, evaluation plus the caller's evaluation hooks, pictures, asynchronous
checkpoints) -> final checkpoint. Host syncs happen only at the steps of those actions.
The trainer holds the workdir's lock throughout, and a stop signal (SIGTERM, SIGINT) ends
it after the step in flight with a checkpoint of that step (`Preempted`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.core import config as config_lib, contract, flops, parallel, runtime
from jaxgen.training import preemption
from jaxgen.pictures import viz
from jaxgen.training import pictures as training_pictures
from jaxgen.training import workdir as workdir_lib
from jaxgen.training.checkpoint import Checkpointer
from jaxgen.core.contract import Family, Sampler, Translator
from jaxgen.data.pipeline import TrainStream, eval_batches
from jaxgen.data.ranges import to_model_range, to_unit_range
from jaxgen.data.sources import Split
from jaxgen.training.periodic import (PROFILE_AFTER, Every, ProfileWindow,
                             TrainMetrics, run_actions)
from jaxgen.core.progress import Progress
from jaxgen.core.rng import as_key, purpose_key, root_key_data
from jaxgen.core.state import TrainState, averaged_params, ema_decay_at, ema_update
from jaxgen.training.writers import Writer

log = logging.getLogger("jaxgen")

# An evaluation run at every eval step beside the family's eval_step, handed in by the caller
# (the sample metrics of `eval.track_samples`): (trainer, state) -> more test metrics.
EvalHook = Callable[["Trainer", TrainState], Mapping[str, float]]


class Preempted(Exception):
    """A stop signal ended training; a checkpoint of the step reached is on disk."""


class Trainer:
    """Compiles a family's functions for a mesh and runs them.

    Args:
      config: the validated experiment config.
      family: an object fulfilling `contract.Family`.
      splits: {"train": Split, "test": Split}.
      mesh: the devices to run on; default all of them.
    """

    def __init__(self, config: ml_collections.ConfigDict, family: Family,
                 splits: dict[str, Split], mesh: jax.sharding.Mesh | None = None):
        self.config = config
        self.family = family
        self.splits = splits
        self.mesh = mesh or parallel.make_mesh()
        self.rows = parallel.process_rows(config.train.batch_size)
        self.stream = TrainStream(splits["train"], config.train.batch_size, config.seed, self.rows,
                                  family.value_range, config.data.binarize, config.data.dequantize)
        self.ema = config.train.ema_decay > 0
        repl = parallel.replicated(self.mesh)
        data = parallel.batch_sharded(self.mesh)
        self.init_fn = jax.jit(functools.partial(contract.initial_state, family, ema=self.ema),
                               out_shardings=repl,
                               compiler_options=runtime.init_compiler_options(self.mesh))
        self.step_fn = jax.jit(self._train_step, in_shardings=(repl, data),
                               out_shardings=(repl, repl), donate_argnums=0, static_argnums=2)
        self.eval_fn = self.compile_eval(family.eval_step)
        self.sample_fn = jax.jit(self._sample, static_argnums=2, out_shardings=repl)
        self.translate_fn = jax.jit(self._translations, out_shardings=repl)

    # Pure functions, compiled above.

    def _train_step(self, state: TrainState, batch: dict[str, jax.Array],
                    due: frozenset[str] | None = None):
        rng = purpose_key(as_key(state.rng), "train", state.step)
        kwargs = {} if due is None else {"due": due}
        new_state, metrics = self.family.train_step(state, batch, rng, **kwargs)
        new_state = new_state.replace(step=state.step + 1)
        if self.ema:
            decay = ema_decay_at(self.config.train.ema_decay, new_state.step,
                                 self.config.train.ema_warmup)
            new_state = new_state.replace(ema_params=ema_update(
                state.ema_params, averaged_params(new_state.params, self.family.ema_keys),
                decay))
        return new_state, metrics

    def compile_step(self, state: TrainState, batch: dict[str, jax.Array]
                     ) -> tuple["StepPrograms", int]:
        """(the train step compiled ahead of time for these shapes, called as
        programs(state, batch, step); its FLOPs per global step). With lazy regularisers the
        program compiled now is that of step 1, the common step (only the regularisers due
        on every step); the others compile when first due."""
        programs = StepPrograms(self)
        return programs, programs.compile(state, batch, self.regularisers_due(1))

    @property
    def lazy(self) -> bool:
        return isinstance(self.family, contract.LazyRegulariser)

    def compile_eval(self, step_fn: Callable) -> Callable:
        """(state, batch, index) -> (masked sums of step_fn's per-example metrics, count)."""
        def sums(state, batch, index):
            rng = purpose_key(as_key(state.rng), "eval", index)
            per_example = step_fn(state, batch, rng)
            mask = batch["mask"]
            return {k: jnp.sum(v * mask) for k, v in per_example.items()}, jnp.sum(mask)

        repl = parallel.replicated(self.mesh)
        return jax.jit(sums, in_shardings=(repl, parallel.batch_sharded(self.mesh), None),
                       out_shardings=repl)

    def _sample(self, state: TrainState, key_data: jax.Array, num: int):
        return self.family.sample(state, as_key(key_data), num)

    def _translations(self, state: TrainState, a: jax.Array, b: jax.Array) -> jax.Array:
        """[6, N, H, W, C] in [0, 1]: a, G_AB(a), G_BA(G_AB(a)), b, G_BA(b), G_AB(G_BA(b))."""
        family = self.family
        ab, ba = family.translate(state, a, "ab"), family.translate(state, b, "ba")
        rows = (a, ab, family.translate(state, ab, "ba"), b, ba, family.translate(state, ba, "ab"))
        return to_unit_range(jnp.stack(rows), family.value_range)

    def regularisers_due(self, step: int) -> frozenset[str] | None:
        """The program key of `step`: its due regularisers, or None for a family without
        lazy ones."""
        return self.family.regularisers_due(step) if self.lazy else None

    # Host-side driving.

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return parallel.to_global(local, self.mesh)

    def init_state(self) -> TrainState:
        return self.init_fn(root_key_data(self.config.seed),
                            self.global_batch(self.stream.batch_at(0)))

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes, dtypes and shardings of every global training batch."""
        local = self.stream.batch_at(0)
        sharding = parallel.batch_sharded(self.mesh)
        return {k: jax.ShapeDtypeStruct((self.config.train.batch_size,) + v.shape[1:], v.dtype,
                                        sharding=sharding) for k, v in local.items()}

    def abstract_state(self) -> Any:
        return contract.abstract_state(self.family, self.config.seed,
                                       self.global_batch(self.stream.batch_at(0)), self.ema,
                                       parallel.replicated(self.mesh))

    def evaluate(self, state: TrainState, step_fn: Callable | None = None,
                 num_examples: int | None = None) -> dict[str, float]:
        """Means over the test split of per-example metrics: the family's eval_step, or
        step_fn (a likelihood evaluation)."""
        fn = self.eval_fn if step_fn is None else self.compile_eval(step_fn)
        totals, count = None, 0.0
        size = self.config.eval.batch_size
        batches = eval_batches(self.splits["test"], size,
                               parallel.process_rows(parallel.padded(size, self.mesh)),
                               self.family.value_range, self.config.data.binarize,
                               self.config.data.dequantize, self.config.seed,
                               self.config.eval.num_examples if num_examples is None
                               else num_examples, pad_to=parallel.padded(size, self.mesh))
        examples = len(self.splits["test"])
        limit = self.config.eval.num_examples if num_examples is None else num_examples
        progress = Progress("evaluating the test batches",
                            -(-min(limit or examples, examples) // size))
        for index, local in enumerate(batches):
            sums, n = fn(state, self.global_batch(local), jnp.int32(index))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
            count = count + n
            progress.update(index + 1, totals)
        totals, count = parallel.fetch((totals, count))
        return {k: float(v) / float(count) for k, v in totals.items()}

    def sample_images(self, state: TrainState, num: int, index: int = 0) -> np.ndarray:
        """num images [num, H, W, C] in the family's value range, on the host."""
        key = jax.random.key_data(purpose_key(as_key(state.rng), "sample", index))
        return np.asarray(parallel.fetch(self.sample_fn(state, key, num)))

    def translations(self, state: TrainState, num: int, first: int = 0) -> np.ndarray:
        """A Translator's test images `first`..first+num-1 of each domain with their
        translations and cycles: uint8 [6, num, H, W, C] (`viz.TRANSLATION_COLUMNS`)."""
        test = self.splits["test"]
        a, b = (to_model_range(split.images[np.arange(first, first + num) % len(split)],
                               split.max_value, self.family.value_range)
                for split in (test, test.domain_b))
        return viz.to_uint8(np.asarray(parallel.fetch(self.translate_fn(state, a, b))), "unit")

    def batch_sampler(self, state: TrainState, batch_size: int
                      ) -> Callable[[int, jax.Array], jax.Array]:
        """(b, labels int32 [P], batch-sharded) -> batch b of samples [P, H, W, C] in [0, 1],
        batch-sharded, P = batch_size padded to the devices (`parallel.padded`); the first
        batch_size rows are the batch. Batch b draws from fold_in(the run's "sample" key,
        1_000_000 + b), and JAX's partitionable threefry gives row i the same draws in an
        array of any length: numbers depend on the seed and batch size, never on the
        devices."""
        family = self.family
        conditional = family.sampling_classes > 0
        repl, data = parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)
        rows = parallel.padded(batch_size, self.mesh)

        def sample(state, key_data, labels):
            images = family.sample(state, as_key(key_data), rows,
                                   labels if conditional else None)
            return to_unit_range(images, family.value_range)

        compiled = jax.jit(sample, in_shardings=(repl, repl, data), out_shardings=data)
        root = as_key(state.rng)
        return lambda b, labels: compiled(
            state, jax.random.key_data(purpose_key(root, "sample", 1_000_000 + b)), labels)


class StepPrograms:
    """The train step compiled ahead of time: one program, or for a family with lazy
    regularisers (`contract.LazyRegulariser`) one per set of regularisers due, each compiled
    when first due (StyleGAN with lazy R1: two). Call: programs(state, batch, step)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.programs: dict[Any, Callable] = {}

    def compile(self, state: TrainState, batch: dict[str, jax.Array], due) -> int:
        """Compiles the program of `due` for these shapes; logs its compile time and returns
        its FLOPs per global step (convolutions and matmuls of its jaxpr, `jaxgen.flops`,
        from the trace the compile uses)."""
        traced = self.trainer.step_fn.trace(state, batch, due)
        counted = flops.count_jaxpr(traced.jaxpr.jaxpr)
        start = time.perf_counter()
        self.programs[due] = traced.lower().compile()
        step_flops = counted["conv"] + counted["dot"]
        lazy = sorted(set(due or ()) - set(self.trainer.regularisers_due(1) or ()))
        what = f" (with {', '.join(lazy)})" if lazy else ""  # beyond those of every step
        log.info("train step%s compiled in %.1f s; %.3g GFLOP per image (convolutions and "
                 "matmuls)", what, time.perf_counter() - start,
                 step_flops / self.trainer.config.train.batch_size / 1e9)
        return step_flops

    def __call__(self, state: TrainState, batch: dict[str, jax.Array], step: int):
        due = self.trainer.regularisers_due(step)
        if due not in self.programs:
            self.compile(state, batch, due)
        return self.programs[due](state, batch)


def train(config: ml_collections.ConfigDict, workdir: str, family: Family,
          splits: dict[str, Split], eval_hooks: Sequence[EvalHook] = (),
          mesh: jax.sharding.Mesh | None = None) -> TrainState:
    """Trains until config.train.num_steps, resuming from the newest checkpoint in workdir.

    Raises:
      WorkdirBusyError: another trainer holds the workdir.
      Preempted: a stop signal came; the checkpoint of the step reached is written.
      NonFiniteLossError: a metric became NaN or Inf.
    """
    with workdir_lib.lock(workdir), preemption.StopSignals() as stop:
        trainer = Trainer(config, family, splits, mesh)
        log.info("process %d of %d reads rows %d:%d of each global batch of %d",
                 jax.process_index(), jax.process_count(), trainer.rows.start,
                 trainer.rows.stop, config.train.batch_size)
        checkpointer = workdir_lib.checkpointer(workdir, config.checkpoint.keep)
        writer = Writer(workdir, enabled=parallel.is_primary())
        # The config beside the curves (indented: Markdown code), at the step this start resumes.
        writer.text(checkpointer.latest_step() or 0, "config",
                    "\n".join("    " + line for line in config.to_json(indent=2).splitlines()))
        writer.hparams(config_lib.flatten(json.loads(config.to_json())))
        try:
            # The step compiles (from abstract shapes) while the state is restored or
            # initialised: XLA compiles without the GIL, so the two overlap.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                compiling = pool.submit(trainer.compile_step, trainer.abstract_state(),
                                        trainer.abstract_batch())
                state = _restore_or_init(trainer, checkpointer)
                compiled = compiling.result()
            return _loop(trainer, state, compiled, checkpointer, writer, workdir, eval_hooks,
                         stop)
        finally:
            try:
                checkpointer.wait()
            finally:
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


def _loop(trainer: Trainer, state: TrainState, compiled: tuple[Callable, int],
          checkpointer: Checkpointer, writer: Writer,
          workdir: str, eval_hooks: Sequence[EvalHook],
          stop: preemption.StopSignals) -> TrainState:
    config = trainer.config
    num_steps = config.train.num_steps
    start = int(state.step)
    curve_keys = list(trainer.family.curve_metrics)
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    # The bar only on a terminal, and log lines printed above it rather than inside its frames;
    # piped into a file, the logged metrics are the progress lines.
    interactive = parallel.is_primary() and sys.stderr.isatty()
    bar = tqdm(total=num_steps, initial=start, disable=not interactive,
               unit="step", dynamic_ncols=True, mininterval=1.0)
    around_bar = logging_redirect_tqdm() if interactive else contextlib.nullcontext()

    def show(means: dict[str, float]) -> None:
        bar.set_postfix({k: f"{means[k]:.4g}" for k in curve_keys if k in means})

    def evaluate(step: int, state: TrainState) -> None:
        values = trainer.evaluate(state)
        for hook in eval_hooks:
            values.update(hook(trainer, state))
        writer.scalars(step, "test", values)

    def pictures(step: int, state: TrainState) -> None:
        family = trainer.family
        images = viz.to_uint8(trainer.sample_images(state, config.sample.num),
                              family.value_range)
        training_pictures.write_sample_grid(
            workdir, step, images, family.sampling_classes,
            trainer.splits["test"].class_labels(family.sampling_classes), writer)
        training_pictures.write_curves(workdir, curve_keys)

    def translations(step: int, state: TrainState) -> None:
        training_pictures.write_translations(
            workdir, step, trainer.translations(state, config.sample.num), writer)

    step_fn, step_flops = compiled
    train_metrics = TrainMetrics(config, writer, checkpointer, start, show, step_flops)
    actions = [train_metrics, Every(config.eval.every_steps, evaluate)]
    if isinstance(trainer.family, Sampler):  # a classifier has no sampler
        actions.append(Every(config.sample.every_steps, pictures))
    elif isinstance(trainer.family, Translator):
        actions.append(Every(config.sample.every_steps, translations))
    actions.append(Every(config.checkpoint.every_steps, lambda step, state: checkpointer.save(
        step, state, trainer.stream.position(step))))
    profile = ProfileWindow(workdir, start + PROFILE_AFTER, config.train.profile_steps)
    with around_bar:
        try:
            for step in range(start, num_steps):
                batch = trainer.global_batch(trainer.stream.batch_at(step))
                profile.before(step)
                state, metrics = step_fn(state, batch, step)
                profile.after(step + 1, metrics)
                bar.update(1)
                run_actions(actions, step + 1, state, metrics, step + 1 == num_steps)
                if step + 1 < num_steps and stop.requested(step + 1):
                    _stop(trainer, state, step + 1, checkpointer, train_metrics, stop.name)
        finally:
            profile.close()
            bar.close()
    training_pictures.write_curves(workdir, curve_keys)
    writer.flush()
    return state


def _stop(trainer: Trainer, state: TrainState, step: int, checkpointer: Checkpointer,
          train_metrics: TrainMetrics, signal_name: str) -> None:
    """Checks and logs the pending metrics, writes a checkpoint of `step` (unless one was
    just written), waits for it to commit, and raises Preempted."""
    train_metrics.flush_final(step, state)  # never save a non-finite state
    if checkpointer.latest_step() != step:
        checkpointer.save(step, state, trainer.stream.position(step))
    checkpointer.wait()
    raise Preempted(f"stopped by {signal_name} at step {step}: checkpoint {step} written to "
                    f"{checkpointer.directory}; rerun the same command to continue")
