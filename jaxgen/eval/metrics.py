"""Metrics of generated images on extractor features, in float64 NumPy.

Every function takes features [N, D] (or class predictions [N]) and is independent of
the extractor, so the same code serves jaxgen's classifier and Inception-v3.
"""

from __future__ import annotations

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mean [D], covariance [D, D]) in float64 (N - 1 normalisation)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; eigenvalues below 0 (round-off) -> 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray,
                     cov2: np.ndarray) -> float:
    """||m1 - m2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))  (Heusel et al. 2017).

    tr((C1 C2)^(1/2)) equals the sum of square roots of the eigenvalues of the symmetric
    PSD matrix C1^(1/2) C2 C1^(1/2), which `eigh` computes stably even for singular
    covariances, where the general `sqrtm` of C1 C2 returns complex round-off.
    """
    root1 = _psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mean1 - mean2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / D + 1)^3, the kernel of KID (Binkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD^2 between the samples x [m, D] and y [n, D]."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kid(generated: np.ndarray, reference: np.ndarray, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) as torch-fidelity computes it:
    (mean, standard deviation) of the unbiased MMD^2 with the cubic polynomial kernel over
    `subsets` random subsets, each of min(subset_size, N_generated, N_reference) samples of
    each set (drawn without replacement within a subset, independently across subsets).
    The standard deviation is over subsets (ddof 0, as torch-fidelity), not a standard
    error of the mean: subsets overlap."""
    x = np.asarray(generated, np.float64)
    y = np.asarray(reference, np.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    estimates = np.asarray([
        mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                      y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)])
    return float(estimates.mean()), float(estimates.std())


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def knn_radii(features: np.ndarray, k: int, block: int = 1000) -> np.ndarray:
    """Squared distance [N] from each point to its k-th nearest other point of the set."""
    x = np.asarray(features, np.float64)
    radii = np.empty(len(x))
    for start in range(0, len(x), block):
        d = _squared_distances(x[start:start + block], x)
        # Column k of the sorted distances: column 0 is the point itself (distance 0).
        radii[start:start + block] = np.partition(d, k, axis=1)[:, k]
    return radii


def manifold_coverage(queries: np.ndarray, support: np.ndarray, radii: np.ndarray,
                      block: int = 1000) -> float:
    """Fraction of queries inside the union of balls B(support_i, radius_i)."""
    q = np.asarray(queries, np.float64)
    s = np.asarray(support, np.float64)
    inside = 0
    for start in range(0, len(q), block):
        d = _squared_distances(q[start:start + block], s)
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / len(q)


def precision_recall(generated: np.ndarray, reference: np.ndarray, k: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    precision: the share of generated samples inside the reference manifold (realism);
    recall: the share of reference samples inside the generated manifold (diversity).
    Each manifold is the union of balls reaching every point's k-th nearest neighbour.
    """
    return {
        "precision": manifold_coverage(generated, reference, knn_radii(reference, k)),
        "recall": manifold_coverage(reference, generated, knn_radii(generated, k)),
    }


def mode_coverage(predicted: np.ndarray, data_labels: np.ndarray, num_classes: int,
                  threshold: float = 0.1) -> dict[str, float]:
    """Class histogram of samples (as the classifier labels them) against the data's.

    A class counts as covered when its share of the samples is at least `threshold`
    times its share of the data. kl_to_data is KL(p_samples || p_data) in nats: 0 for
    matching histograms, log(num_classes) for one class out of a uniform set.
    """
    p = np.bincount(predicted, minlength=num_classes) / len(predicted)
    q = np.bincount(data_labels, minlength=num_classes) / len(data_labels)
    present = p > 0
    kl = float(np.sum(p[present] * np.log(p[present] / np.maximum(q[present], 1e-12))))
    return {"classes_covered": int(np.sum(p >= threshold * q)), "class_kl_to_data": kl}


def conditional_accuracy(predicted: np.ndarray, requested: np.ndarray) -> float:
    """Share of samples generated for class y that the classifier assigns to y."""
    return float(np.mean(np.asarray(predicted) == np.asarray(requested)))
