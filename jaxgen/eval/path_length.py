"""Perceptual path length (Karras et al. 2019, sec. 4.2): how much an image changes, as
perceived, for a small step along a path in latent space,

    PPL = E[ d(G(p(t)), G(p(t + eps))) / eps^2 ],  t ~ U(0, 1),

p the spherical path between two z (PPL in Z) or the straight path between their w (PPL in
W). The paper's d is the LPIPS distance (VGG-16 features); jaxgen has no VGG weights offline,
so d is the squared distance between the unit-normalised features of the evaluation
classifier, LPIPS's recipe on one network layer. Figures are comparable between models
evaluated with the same classifier, not with published PPL values. Like the official code,
the mean leaves out the pairs below the 1st and above the 99th percentile.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# batch index -> (images at t, images at t + eps): [B, H, W, C] in [0, 1] each, same noise.
PairSampler = Callable[[int], tuple[np.ndarray, np.ndarray]]
# images [B, H, W, C] in [0, 1] -> features [B, D]
Features = Callable[[np.ndarray], np.ndarray]


def feature_distance(features_a: np.ndarray, features_b: np.ndarray) -> np.ndarray:
    """[B, D] twice -> [B]: squared distance of the unit-normalised feature vectors."""
    def unit(f):
        f = np.asarray(f, np.float64)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-10)
    return np.sum(np.square(unit(features_a) - unit(features_b)), axis=1)


def path_lengths(pairs: PairSampler, features: Features, num_batches: int,
                 epsilon: float) -> np.ndarray:
    """d / eps^2 of every pair: [num_batches * B]."""
    lengths = []
    for b in range(num_batches):
        images_a, images_b = pairs(b)
        lengths.append(feature_distance(features(images_a), features(images_b)) / epsilon ** 2)
    return np.concatenate(lengths)


def trimmed_mean(lengths: np.ndarray, low: float = 1.0, high: float = 99.0) -> float:
    """The mean of the values between the low-th and high-th percentiles, inclusive (the
    official code's "lower" and "higher" percentiles)."""
    lo = np.percentile(lengths, low, method="lower")
    hi = np.percentile(lengths, high, method="higher")
    kept = lengths[(lengths >= lo) & (lengths <= hi)]
    return float(np.mean(kept))
