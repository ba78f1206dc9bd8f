"""Periodic actions of the training loop, in the spirit of clu's `periodic_actions`.

Each action says at which steps it is due and what it does then; the loop only steps and
asks. clu's own module is not used: it pulls in clu's metric writers, which import
TensorFlow (seconds per process), and it has no "also at the last step" rule.
"""

from __future__ import annotations

from typing import Any, Callable


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
