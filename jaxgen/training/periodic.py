"""Periodic actions of the training loop, in the spirit of clu's `periodic_actions`: the
training metrics (with the NaN check and the throughput), the profile window.

Each action says at which steps it is due and what it does then; the loop only steps and
asks. clu's own module is not used: it pulls in clu's metric writers, which import
TensorFlow (seconds per process), and it has no "also at the last step" rule.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import jax
import numpy as np

from jaxgen.core import flops, parallel
from jaxgen.training import workdir as workdir_lib
from jaxgen.training.checkpoint import Checkpointer
from jaxgen.core.state import learning_rate_schedule
from jaxgen.training.writers import Writer

log = logging.getLogger("jaxgen")


class NonFiniteLossError(FloatingPointError):
    """A metric became NaN or Inf; raised before anything is saved at that step."""


class Every:
    """Calls fn(step, state) at multiples of `every_steps` and at the last step; never when
    every_steps is 0 (a sweep that evaluates its runs afterwards, a test of resumption)."""

    def __init__(self, every_steps: int, fn: Callable[[int, Any], None], at_last: bool = True):
        self.every_steps = every_steps
        self.fn = fn
        self.at_last = at_last

    def due(self, step: int, last: bool) -> bool:
        if not self.every_steps:
            return False
        return step % self.every_steps == 0 or (last and self.at_last)

    def observe(self, step: int, metrics: Any) -> None:
        """Every step's metrics (device arrays: no host sync here)."""

    def __call__(self, step: int, state: Any, metrics: Any, last: bool) -> None:
        self.observe(step, metrics)
        if self.due(step, last):
            self.fn(step, state)


def run_actions(actions: list[Every], step: int, state: Any, metrics: Any, last: bool) -> None:
    """Runs the due actions in order (the order is the loop's contract: metrics checked before
    anything is evaluated or saved)."""
    for action in actions:
        action(step, state, metrics, last)


class TrainMetrics(Every):
    """Collects each step's metrics on the device; at log and checkpoint steps fetches them,
    raises NonFiniteLossError at the first non-finite step, and at log steps writes their
    means with the throughput."""

    def __init__(self, config, writer: Writer, checkpointer: Checkpointer, start: int,
                 on_log: Callable[[dict[str, float]], None], step_flops: int = 0):
        super().__init__(config.train.log_every_steps, self._flush)
        # MFU: the dense peak of every device for the compute dtype, where it is known.
        peak = flops.peak_flops(jax.devices()[0], config.train.compute_dtype)
        self.step_flops = step_flops
        self.peak = peak * jax.device_count() if peak else None
        self.log_every = config.train.log_every_steps
        self.save_every = config.checkpoint.every_steps
        self.batch_size = config.train.batch_size
        schedule = learning_rate_schedule(config.train)
        self.schedule = schedule if callable(schedule) else None
        self.writer, self.checkpointer, self.on_log = writer, checkpointer, on_log
        self.pending: list = []
        self.last = (start, time.perf_counter())
        self.first = start + 1  # logged too: the first loss within seconds of the start
        self.final = False

    def due(self, step: int, last: bool) -> bool:
        self.final = last
        return (step % self.log_every == 0 or step % self.save_every == 0 or last
                or step == self.first)

    def flush_final(self, step: int, state) -> None:
        """Checks and logs what is pending, as at the last step (a stop before the end)."""
        self.final = True
        if self.pending:
            self._flush(step, state)

    def observe(self, step: int, metrics) -> None:
        self.pending.append(metrics)

    def _flush(self, step: int, state) -> None:
        history = parallel.fetch(self.pending)
        self.pending = []
        first = step - len(history) + 1
        for offset, metrics in enumerate(history):
            bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
            if bad:
                self.checkpointer.wait()
                raise NonFiniteLossError(
                    f"non-finite {bad[0]} ({float(np.asarray(metrics[bad[0]]).mean())}) at step "
                    f"{first + offset}; last good checkpoint: step "
                    f"{self.checkpointer.latest_step()}")
        if step % self.log_every and not self.final and step != self.first:
            return
        means = {k: float(np.mean([m[k] for m in history])) for k in history[0]}
        now = time.perf_counter()
        rate = (step - self.last[0]) / max(now - self.last[1], 1e-9)
        self.last = (step, now)
        means.update(steps_per_sec=rate, images_per_sec=rate * self.batch_size)
        if self.schedule is not None:  # the rate of this step's update (the optimiser's count)
            means["learning_rate"] = float(self.schedule(step - 1))
        if self.step_flops:
            means["tflops_per_sec"] = rate * self.step_flops / 1e12
            if self.peak:
                means["mfu"] = rate * self.step_flops / self.peak
        self.writer.scalars(step, "train", means)
        self.on_log(means)


PROFILE_AFTER = 3  # warm-up steps (compile, first transfers) before a profile starts


class ProfileWindow:
    """A jax.profiler trace of steps (first, first + num] in DIR/profile (TensorBoard's
    profile plugin or Perfetto open it); num = 0: none."""

    def __init__(self, workdir: str, first: int, num: int):
        self.directory = workdir_lib.path(workdir, "profile")
        self.first, self.last = first, first + num
        self.active = False
        self.enabled = num > 0 and parallel.is_primary()

    def before(self, step: int) -> None:
        if self.enabled and step == self.first:
            jax.profiler.start_trace(self.directory)
            self.active = True

    def after(self, step: int, metrics) -> None:
        if self.active and step == self.last:
            jax.block_until_ready(metrics)  # the traced steps' device work, all of it
            self.close()
            log.info("profile of steps %d..%d written to %s", self.first + 1, self.last,
                     self.directory)

    def close(self) -> None:
        if self.active:
            self.active = False
            jax.profiler.stop_trace()
