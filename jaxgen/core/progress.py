"""Progress lines for the long loops outside training (a likelihood bound over the test set,
sampling for the metrics): at most one line per interval, with the time spent and left."""

from __future__ import annotations

import logging
import time
from typing import Any

import jax

log = logging.getLogger("jaxgen")


class Progress:
    """Call `update(done, pending)` after each of `total` items. `pending` (device arrays of
    the work so far) is waited for at every call: JAX dispatches asynchronously, and a loop
    that only enqueues work would otherwise finish at once and log nothing."""

    def __init__(self, what: str, total: int, every_seconds: float = 10.0):
        self.what, self.total, self.every = what, total, every_seconds
        self.start = self.last = time.perf_counter()

    def update(self, done: int, pending: Any = None) -> None:
        jax.block_until_ready(pending)
        now = time.perf_counter()
        if done >= self.total or now - self.last < self.every:
            return
        elapsed = now - self.start
        log.info("%s: %d of %d, %.0f s so far, about %.0f s left", self.what, done, self.total,
                 elapsed, elapsed / done * (self.total - done))
        self.last = now
