"""The metric formulas against references and their expected directions, on features."""

import numpy as np
import pytest
import scipy.linalg

from jaxgen.eval import metrics


def _random_covariance(rng, dim, rank=None):
    factor = rng.normal(size=(dim, rank or dim))
    return factor @ factor.T / dim


def _scipy_frechet(m1, c1, m2, c2):
    """The textbook formula with scipy's general sqrtm, in float64 (pytorch-fid's way)."""
    root = scipy.linalg.sqrtm(c1 @ c2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(root.real))


@pytest.mark.parametrize("dim,rank", [(8, None), (64, None), (32, 40)])
def test_frechet_distance_matches_scipy_reference(dim, rank):
    rng = np.random.default_rng(dim)
    m1, m2 = rng.normal(size=dim), rng.normal(size=dim)
    c1, c2 = _random_covariance(rng, dim, rank), _random_covariance(rng, dim, rank)
    ours = metrics.frechet_distance(m1, c1, m2, c2)
    assert ours == pytest.approx(_scipy_frechet(m1, c1, m2, c2), rel=1e-7, abs=1e-8)


def test_frechet_distance_is_stable_on_singular_covariances():
    rng = np.random.default_rng(0)
    c1 = _random_covariance(rng, 64, rank=5)  # rank 5 of 64: fewer samples than dimensions
    c2 = _random_covariance(rng, 64, rank=5)
    mean = np.zeros(64)
    value = metrics.frechet_distance(mean, c1, mean, c2)
    assert np.isfinite(value) and value > 0
    # sqrt of round-off eigenvalues (~1e-16) costs about 1e-7 of a trace of ~5.
    assert metrics.frechet_distance(mean, c1, mean, c1) == pytest.approx(0.0, abs=1e-5)
    assert metrics.frechet_distance(mean, c2, mean, c1) == pytest.approx(value, rel=1e-7)


def test_fid_of_samples_zero_for_same_distribution_symmetric_and_growing_with_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 16)), rng.normal(size=(4000, 16))
    same = metrics.fid(a, b)
    assert same < 0.05
    assert metrics.fid(b, a) == pytest.approx(same, rel=1e-9)
    shifts = [metrics.fid(a, b + shift) for shift in (0.5, 1.0, 2.0)]
    assert same < shifts[0] < shifts[1] < shifts[2]
    # Mean shift s on 16 dims adds 16 s^2 to the distance.
    assert shifts[1] == pytest.approx(16.0, rel=0.05)


def _cubic_kernel_mmd2_reference(x, y):
    """torch-fidelity's mmd2 written out: k(a, b) = (a.b / d + 1)^3, unbiased estimator."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy))
            / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_is_the_mean_and_std_over_random_subsets_as_torch_fidelity():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(3000, 16))
    generated = rng.normal(size=(2000, 16)) + 0.3
    mean, std = metrics.kid(generated, reference, subsets=7, subset_size=500, seed=3)
    draw = np.random.default_rng(3)
    expected = [_cubic_kernel_mmd2_reference(generated[draw.choice(2000, 500, replace=False)],
                                             reference[draw.choice(3000, 500, replace=False)])
                for _ in range(7)]
    assert mean == pytest.approx(np.mean(expected), rel=1e-9)
    assert std == pytest.approx(np.std(expected), rel=1e-9)


def test_kid_is_unbiased_near_zero_and_its_spread_shrinks_with_the_subset_size():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(8000, 16))
    same = rng.normal(size=(6400, 16))
    small = metrics.kid(same, reference, subsets=100, subset_size=100)
    large = metrics.kid(same, reference, subsets=100, subset_size=1600)
    shifted = metrics.kid(same + 0.5, reference, subsets=100, subset_size=1600)
    assert large[1] < small[1] / 3  # the MMD's spread falls about as 1 / subset size
    assert abs(large[0]) < 3 * large[1] / np.sqrt(100) + 1e-3  # zero, up to its error
    assert shifted[0] > 10 * shifted[1] > 0
    # A subset larger than a set is cut to it.
    assert metrics.kid(same[:50], reference, subsets=5, subset_size=1000)[0] == pytest.approx(
        metrics.kid(same[:50], reference, subsets=5, subset_size=50)[0])


def test_mmd_is_unbiased_against_the_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(6) for j in range(6) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(5) for j in range(5) if i != j])
    xy = np.mean([k(a, b) for a in x for b in y])
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_knn_radii_against_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 4))
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    expected = np.sort(d, axis=1)[:, 3]
    np.testing.assert_allclose(metrics.knn_radii(x, 3, block=7), expected, rtol=1e-9, atol=1e-12)


def _clusters(rng, n, centers, spread=0.3):
    return centers[rng.integers(len(centers), size=n)] + spread * rng.normal(
        size=(n, centers.shape[1]))


def test_precision_recall_directions_for_collapsed_and_spread_out_sets():
    rng = np.random.default_rng(5)
    centers = rng.normal(scale=4.0, size=(10, 8))
    train, reference = _clusters(rng, 2000, centers), _clusters(rng, 2000, centers)
    # Mode collapse: copies of twenty training points.
    collapsed = np.repeat(train[:20], 100, axis=0)
    # Spread out: the data's mean and covariance inflated, covering every mode and the space
    # between them.
    spread = rng.multivariate_normal(train.mean(0), 2.0 * np.cov(train, rowvar=False), 2000)
    fair = _clusters(rng, 2000, centers)
    pr_collapsed = metrics.precision_recall(collapsed, reference)
    pr_spread = metrics.precision_recall(spread, reference)
    pr_fair = metrics.precision_recall(fair, reference)
    # k = 3 manifolds of 200 points per mode hold about 85% of fresh draws in 8-D.
    assert pr_collapsed["precision"] > 0.75 and pr_collapsed["recall"] < 0.05
    assert pr_spread["precision"] < 0.3 and pr_spread["recall"] > 0.8
    assert pr_fair["precision"] > 0.75 and pr_fair["recall"] > 0.75


def test_mode_coverage_counts_and_kl():
    data = np.repeat(np.arange(10), 100)
    full = metrics.mode_coverage(data[::-1].copy(), data, 10)
    assert full == {"classes_covered": 10, "class_kl_to_data": 0.0}
    single = metrics.mode_coverage(np.full(500, 3), data, 10)
    assert single["classes_covered"] == 1
    assert single["class_kl_to_data"] == pytest.approx(np.log(10))
    assert metrics.conditional_accuracy(np.array([1, 2, 3, 3]), np.array([1, 2, 3, 4])) == 0.75


def test_the_pixel_histogram_baseline_is_the_mean_test_nll_of_per_pixel_categoricals():
    from jaxgen.data.sources import Split
    from jaxgen.eval.baselines import pixel_histogram_bits_per_dim
    rng = np.random.default_rng(0)
    train = Split(rng.integers(0, 4, (50, 2, 1, 1)).astype(np.uint8), np.zeros(50, np.int32),
                  max_value=3, num_classes=1)
    test = Split(rng.integers(0, 4, (7, 2, 1, 1)).astype(np.uint8), np.zeros(7, np.int32),
                 max_value=3, num_classes=1)
    # By hand: pixel i's level probabilities (count + 1) / (50 + 4).
    expected = 0.0
    for image in test.images.reshape(7, 2):
        for i, value in enumerate(image):
            count = np.sum(train.images.reshape(50, 2)[:, i] == value)
            expected -= np.log2((count + 1) / 54)
    assert pixel_histogram_bits_per_dim(train, test) == pytest.approx(expected / (7 * 2))
    # Binarised: the expected bits over the Bernoulli draw of each test pixel.
    p = (train.images.reshape(50, 2) / 3).sum(0)
    p = (p + 1) / 52
    q = test.images.reshape(7, 2) / 3
    bits = -(q * np.log2(p) + (1 - q) * np.log2(1 - p)).sum() / 14
    assert pixel_histogram_bits_per_dim(train, test, binarize=True) == pytest.approx(bits)


def test_the_baselines_of_the_shipped_datasets():
    from jaxgen.data import sources
    from jaxgen.eval.baselines import pixel_histogram_bits_per_dim
    digits = sources.load("digits")
    # The figures issue 13 computed independently: 2.42 bits/dim on 17 grey levels.
    assert pixel_histogram_bits_per_dim(digits["train"], digits["test"]) == pytest.approx(
        2.424, abs=1e-3)
