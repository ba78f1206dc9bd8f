"""The two value ranges a family declares for its images, and the conversions between them.

"unit": [0, 1]; "symmetric": [-1, 1]. Pixels on disk are integers 0..max_value.
"""

from __future__ import annotations

import numpy as np

VALUE_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}


def to_model_range(pixels: np.ndarray, max_value: int, value_range: str,
                   noise: np.ndarray | None = None, binarize: bool = False) -> np.ndarray:
    """Integer pixels in 0..max_value -> float32 in the model's declared range.

    With `noise` (uniform [0, 1), pixels' shape): binarize -> Bernoulli(pixels / max_value)
    draws; otherwise uniform dequantisation (pixels + noise) / (max_value + 1).
    """
    if noise is None:
        unit = pixels.astype(np.float32) / max_value
    elif binarize:
        unit = (noise < pixels.astype(np.float32) / max_value).astype(np.float32)
    else:
        unit = (pixels.astype(np.float32) + noise) / (max_value + 1)
    low, high = VALUE_RANGES[value_range]
    return unit * (high - low) + low


def clip_to_range(images, value_range: str):
    """Images (NumPy or JAX) clipped to the range: what a sampler returns."""
    low, high = VALUE_RANGES[value_range]
    return images.clip(low, high)


def to_unit_range(images, value_range: str):
    """Images (NumPy or JAX) in value_range -> [0, 1], clipped: what extractors and pictures
    take."""
    if value_range == "symmetric":
        images = (images + 1.0) / 2.0
    return images.clip(0.0, 1.0)
