"""Stop signals as a step to stop at: how a preempted run keeps its work.

Schedulers preempt a job with SIGTERM (TPU VMs, SLURM, Kubernetes; SIGINT from a terminal),
then SIGKILL after a grace period. While `StopSignals` is active the first such signal only
asks the training loop to stop after the step in flight; the loop then writes a checkpoint,
waits for it to commit and exits with its own code. A second signal ends the process at
once. Deliveries within `DUPLICATE_WINDOW_S` of the first count once: a scheduler that
signals a whole process tree (a sweep and its trainer) and a sweep that forwards the signal
both reach the trainer.

Multi-host jobs must stop at the same step on every process, or the checkpoint's
collective save hangs. There the coordination service that `jax.distributed.initialize`
starts catches SIGTERM on any host and agrees on a step with all of them
(`multihost_utils.reached_preemption_sync_point`); SIGINT is turned into a SIGTERM of this
process so that it takes the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import jax
from jax.experimental import multihost_utils

DUPLICATE_WINDOW_S = 2.0


class StopSignals:
    """Context manager: while active, `requested(step)` says whether to stop after `step`
    (the same answer on every process). Does nothing outside the main thread, where Python
    cannot handle signals."""

    def __init__(self):
        self.signum: int | None = None
        self.first_at = 0.0
        self.previous: dict[int, object] = {}
        self.multihost = jax.process_count() > 1

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        if self.multihost:
            # SIGTERM stays with the coordination service's handler.
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._to_sigterm)
        else:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self.first_at = signum, now
        elif now - self.first_at > DUPLICATE_WINDOW_S:
            # os.write: print() may hold a lock the interrupted code holds.
            os.write(sys.stderr.fileno(), f"second {signal.Signals(signum).name}: exiting "
                                          "without a checkpoint\n".encode())
            os._exit(128 + signum)

    def _to_sigterm(self, signum: int, frame) -> None:
        first = self.signum is None
        self._handle(signum, frame)
        if first:
            os.kill(os.getpid(), signal.SIGTERM)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "SIGTERM"

    def requested(self, step: int) -> bool:
        """Whether to stop after `step`. Multi-host: a collective decision, so every process
        calls it at every step."""
        if self.multihost:
            return bool(multihost_utils.reached_preemption_sync_point(step))
        return self.signum is not None
