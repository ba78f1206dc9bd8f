"""Silencing a library's expected warnings around one call, and nothing else."""

from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def only_errors(logger: str):
    """Only records of ERROR and above from `logger` (e.g. "absl") while inside: for calls
    whose warnings describe the expected case (a read-only checkpoint opened read-only, a
    probe of a dataset that is not prepared)."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)
