"""Likelihood baselines that need no model: what a bits/dim figure must beat to mean anything.

The independent per-pixel histogram treats every pixel (and channel) as its own categorical
variable, fitted on the training split: a model whose bound is worse than it has learnt less
about the data than its pixels' marginals (issue 13 found two such published figures).
"""

from __future__ import annotations

import math

import numpy as np

from jaxgen.data.sources import Split


def pixel_histogram_bits_per_dim(train: Split, test: Split, binarize: bool = False,
                                 smoothing: float = 1.0) -> float:
    """Test bits/dim of independent per-pixel categoricals fitted on `train`.

    Discrete pixels (values 0..max_value): a categorical over the max_value + 1 levels of
    each pixel, counts plus `smoothing` (Laplace). This is also the density of the
    dequantised data under the matching piecewise-uniform model, so it compares with the
    bits/dim of dequantised models. binarize: the pixels are dynamically binarised
    (Bernoulli with the pixel's intensity); the expected test bits/dim over the binarisation
    of independent Bernoullis with the training mean intensity, which is what a model on
    binarised pixels is measured on.
    """
    if train.images.shape[1:] != test.images.shape[1:]:
        raise ValueError(f"train {train.images.shape[1:]} and test {test.images.shape[1:]} "
                         "images differ in shape")
    dims = int(np.prod(train.images.shape[1:]))
    x_train = train.images.reshape(len(train), dims).astype(np.int64)
    x_test = test.images.reshape(len(test), dims).astype(np.int64)
    if binarize:
        # p_i: the training probability that pixel i is on, smoothed as a 2-level histogram.
        on = (x_train / train.max_value).sum(axis=0)
        p = (on + smoothing) / (len(train) + 2 * smoothing)
        q = x_test / test.max_value  # P(test pixel is on) under the binarisation
        nats = -(q * np.log(p) + (1 - q) * np.log1p(-p)).sum(axis=1)
        return float(nats.mean() / (dims * math.log(2.0)))
    levels = train.max_value + 1
    counts = np.zeros((dims, levels))
    np.add.at(counts, (np.broadcast_to(np.arange(dims), x_train.shape), x_train), 1.0)
    log_p = np.log((counts + smoothing) / (len(train) + levels * smoothing))
    nats = -log_p[np.arange(dims)[None, :], x_test].sum(axis=1)
    return float(nats.mean() / (dims * math.log(2.0)))
