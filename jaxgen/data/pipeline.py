"""Deterministic batching: the batch of step s is a pure function of (seed, s).

Because a batch depends on nothing but the step, the iterator position saved in a
checkpoint is the step itself, a restarted run reads exactly the batches it would
have read, and any number of processes see the same global batch (each process
materialises only its own rows).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from jaxgen.data.ranges import to_model_range
from jaxgen.data.sources import Split

# Distinct stream ids so that shuffling, per-pixel noise and caption choice never share
# random numbers.
_SHUFFLE_STREAM, _NOISE_STREAM, _CAPTION_STREAM, _DOMAIN_B_STREAM = 0, 1, 2, 3


class TrainStream:
    """Shuffled, endless training batches, epoch by epoch without replacement.

    Args:
      split: the training split.
      global_batch_size: rows per step over all processes.
      seed: the experiment seed.
      rows: this process's rows of each global batch (`parallel.process_rows`).
      value_range: "unit" ([0, 1]) or "symmetric" ([-1, 1]).
      binarize: replace pixels x in [0, 1] by Bernoulli(x) draws, fresh every step.
      dequantize: add uniform noise to integer pixels before scaling (Theis et al. 2016),
        so that a continuous density on the result bounds the discrete likelihood.

    Two-domain data (`Split.domain_b`) adds domain B's rows, drawn by a shuffle of their own
    (independent of A's, epochs of B's length): unpaired batches.
    """

    def __init__(self, split: Split, global_batch_size: int, seed: int, rows: slice,
                 value_range: str = "unit", binarize: bool = False, dequantize: bool = False,
                 stream: int = _SHUFFLE_STREAM):
        if global_batch_size > len(split):
            domain = " of domain B" if stream == _DOMAIN_B_STREAM else ""
            raise ValueError(f"batch size {global_batch_size} exceeds the {len(split)} "
                             f"training examples{domain}")
        self.stream = stream
        if binarize and dequantize:
            raise ValueError("data.binarize and data.dequantize exclude each other")
        self.split = split
        self.batch_size = global_batch_size
        self.seed = seed
        self.rows = rows
        self.value_range = value_range
        self.binarize = binarize
        self.dequantize = dequantize
        self.steps_per_epoch = len(split) // global_batch_size
        self._epoch_cache: tuple[int, np.ndarray] | None = None
        self.domain_b = None
        if split.domain_b is not None:
            if binarize or dequantize:
                raise ValueError("two-domain data takes neither data.binarize nor "
                                 "data.dequantize")
            self.domain_b = TrainStream(split.domain_b, global_batch_size, seed, rows,
                                        value_range, stream=_DOMAIN_B_STREAM)

    def position(self, step: int) -> dict[str, int]:
        """Where step `step` reads: saved beside each checkpoint for inspection."""
        epoch, index = divmod(step, self.steps_per_epoch)
        return {"step": step, "epoch": epoch, "batch_in_epoch": index}

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, self.stream, epoch])
            self._epoch_cache = (epoch, rng.permutation(len(self.split)))
        return self._epoch_cache[1]

    def batch_at(self, step: int) -> dict[str, np.ndarray]:
        """This process's rows of step `step`: image float32 [b, H, W, C], label int32 [b];
        captioned data adds tokens int32 [b, L], one of each image's captions drawn from
        (seed, step); two-domain data adds domain B's image_b [b, H, W, C], label_b [b]."""
        epoch, index = divmod(step, self.steps_per_epoch)
        first = index * self.batch_size
        global_rows = self._permutation(epoch)[first:first + self.batch_size]
        local = global_rows[self.rows]
        pixels = self.split.images[local]
        noise = None
        if self.binarize or self.dequantize:
            # Noise for the whole global batch, then this process's rows: the same
            # numbers whatever the number of processes.
            rng = np.random.default_rng([self.seed, _NOISE_STREAM, step])
            noise = rng.random((self.batch_size,) + pixels.shape[1:], dtype=np.float32)[self.rows]
        image = to_model_range(pixels, self.split.max_value, self.value_range, noise, self.binarize)
        batch = {"image": image, "label": self.split.labels[local]}
        if self.split.tokens is not None:
            rng = np.random.default_rng([self.seed, _CAPTION_STREAM, step])
            choice = rng.integers(0, self.split.tokens.shape[1], self.batch_size)[self.rows]
            batch["tokens"] = self.split.tokens[local, choice]
        if self.domain_b is not None:
            b = self.domain_b.batch_at(step)
            batch.update(image_b=b["image"], label_b=b["label"])
        return batch


def eval_batches(split: Split, global_batch_size: int, rows: slice, value_range: str = "unit",
                 binarize: bool = False, dequantize: bool = False, seed: int = 0,
                 num_examples: int = 0, pad_to: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """The test split in order, once, padded to whole batches.

    Yields this process's rows of global batches of max(global_batch_size, pad_to) rows:
    image [b, H, W, C], label [b], mask float32 [b] (0 on padding rows), and for captioned
    data tokens [b, L] (example i's caption i mod K: every phrasing, the same each time).
    pad_to (a multiple of the devices) pads each batch without changing which examples it
    holds, so numbers do not depend on the device count. Binarisation and dequantisation use
    a fixed seed, so every evaluation sees the same test set. Two-domain data adds domain
    B's test split in order, cycled to A's length: image_b, label_b.
    """
    total = min(num_examples, len(split)) if num_examples else len(split)
    rng = np.random.default_rng([seed, _NOISE_STREAM, 2**31])
    extra = max(pad_to - global_batch_size, 0)
    for start in range(0, total, global_batch_size):
        index = np.arange(start, start + global_batch_size)
        mask = (index < total).astype(np.float32)
        index = np.minimum(index, total - 1)
        pixels = split.images[index]
        noise = rng.random(pixels.shape, dtype=np.float32) if binarize or dequantize else None
        image = to_model_range(pixels, split.max_value, value_range, noise, binarize)
        batch = {"image": image, "label": split.labels[index], "mask": mask}
        if split.tokens is not None:
            batch["tokens"] = split.tokens[index, index % split.tokens.shape[1]]
        if split.domain_b is not None:
            b_index = index % len(split.domain_b)
            batch["image_b"] = to_model_range(split.domain_b.images[b_index],
                                              split.domain_b.max_value, value_range)
            batch["label_b"] = split.domain_b.labels[b_index]
        if extra:  # copies of the last row, masked out
            batch = {k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)])
                     for k, v in batch.items()}
            batch["mask"][-extra:] = 0.0
        yield {k: v[rows] for k, v in batch.items()}
