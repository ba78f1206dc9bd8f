"""Metric writers: console, metrics.jsonl and TensorBoard.

clu's writers import TensorFlow at import time (seconds per process), so TensorBoard
events are written by tensorboardX, which needs no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Mapping

import numpy as np

from jaxgen.training import workdir as workdir_lib
from jaxgen.core.config import ConfigError

log = logging.getLogger("jaxgen")


class Writer:
    """Writes scalars and images for process 0; a no-op elsewhere."""

    def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if not enabled:
            return
        path = workdir_lib.path(workdir, workdir_lib.METRICS_LOG)
        _drop_partial_line(path)
        self._jsonl = open(path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(workdir_lib.path(workdir, workdir_lib.TENSORBOARD))

    def scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self._jsonl.flush()
        log.info("%s step %d: %s", split, step,
                 ", ".join(f"{k}={v:.5g}" for k, v in sorted(values.items())))
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """image: uint8 [H, W, C]."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def text(self, step: int, tag: str, text: str) -> None:
        """Markdown text in TensorBoard's text tab (the run's config, say)."""
        if self.enabled and self._tb is not None:
            self._tb.add_text(tag, text, step)

    def hparams(self, values: Mapping[str, object]) -> None:
        """The run's settings in TensorBoard's HParams tab (flat keys such as
        "model.beta"; tuples as text). Only the session-start record is written: without an
        experiment record TensorBoard takes every scalar tag of the run as a metric, so runs
        of a sweep under one log directory compare on all of them."""
        if not (self.enabled and self._tb is not None):
            return
        from tensorboardX.summary import hparams
        flat = {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v)
                for k, v in values.items() if v is not None}
        from tensorboardX.proto.tensor_pb2 import TensorProto
        from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
        _, session_start, _ = hparams(flat, {})
        # TensorBoard's own hparams summaries carry an empty float tensor, and its readers
        # list a tag only when it holds data; tensorboardX writes the metadata alone.
        session_start.value[0].tensor.CopyFrom(TensorProto(
            dtype=1, tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=0)])))
        self._tb.file_writer.add_summary(session_start)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _drop_partial_line(path: str) -> None:
    """Cuts a last line a kill left unfinished, so the next row starts on its own line."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """The rows of `workdir/metrics.jsonl` in step order, optionally of one split.

    A resumed run logs again the steps between its last checkpoint and the kill;
    the later row of a (split, step) wins.
    """
    path = workdir_lib.path(workdir, workdir_lib.METRICS_LOG)
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() or not line.endswith("\n"):  # a row a kill cut short
            continue
        try:
            row = json.loads(line)
            rows[(row["split"], row["step"])] = row
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number} is not a metrics row") from None
    return sorted((r for r in rows.values() if split is None or r["split"] == split),
                  key=lambda r: (r["step"], r["split"]))
