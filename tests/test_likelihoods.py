"""The VAE's mathematics: KL, IWAE bound, reparameterised gradients, module shapes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.config import ConfigError
from jaxgen.data.sources import DataSpec
from jaxgen.models.autoencoder import Decoder, Encoder
from jaxgen.losses import likelihoods as lk
from jaxgen.core.rng import root_key_data
from tests.helpers import ROOT


def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 5)).astype(np.float32)
    log_variance = rng.normal(scale=0.5, size=(3, 5)).astype(np.float32)
    exact = lk.kl_standard_normal(jnp.asarray(mean), jnp.asarray(log_variance))
    z = mean + np.exp(0.5 * log_variance) * rng.normal(size=(200_000, 3, 5))
    log_q = -0.5 * (np.log(2 * np.pi) + log_variance + (z - mean) ** 2 / np.exp(log_variance))
    log_p = -0.5 * (np.log(2 * np.pi) + z ** 2)
    monte_carlo = (log_q - log_p).sum(-1).mean(0)
    np.testing.assert_allclose(exact, monte_carlo, rtol=0.02, atol=0.02)


def test_kl_is_zero_for_the_prior_itself():
    np.testing.assert_allclose(lk.kl_standard_normal(jnp.zeros((2, 4)), jnp.zeros((2, 4))), 0.0)


def _family():
    from jaxgen.core.config import load
    from jaxgen.families.vae import VAEFamily
    config = load(f"{ROOT}/experiments/vae_digits.py", ["model.features=(8,16)", "model.hidden=32",
                                                         "model.latent_dim=4"])
    return VAEFamily(config, DataSpec((8, 8, 1), 10, 16))


def test_iwae_bound_rises_with_k_towards_the_true_likelihood():
    # p(z) = N(0, I), p(x | z) = N(x; z, 0.1 I): log p(x) = log N(x; 0, 1.1 I) exactly.
    # q = N(0, I) is a poor posterior, so the bound has room to climb.
    x = jnp.array([[1.5, -0.5], [0.2, 2.0]])
    true = jnp.sum(lk.gaussian_log_density(x, 0.0, jnp.log(1.1)), -1)

    def log_joint(z):
        return (jnp.sum(lk.gaussian_log_density(x, z, jnp.log(0.1)), -1)
                + lk.standard_normal_log_density(z))

    mean, log_variance = jnp.zeros_like(x), jnp.zeros_like(x)
    def expected_bound(k):  # the bound is an expectation: average 200 independent estimates
        keys = jax.random.split(jax.random.key(k), 200)
        return jnp.mean(jax.vmap(lambda key: lk.iwae_log_likelihood(
            log_joint, mean, log_variance, key, k, min(k, 100)))(keys), 0)

    bounds = [expected_bound(k) for k in (1, 10, 100, 1000)]
    for lower, higher in zip(bounds, bounds[1:]):
        assert np.all(higher > lower)
    assert np.all(bounds[-1] <= true + 0.05)  # a lower bound, up to estimation noise
    np.testing.assert_allclose(bounds[-1], true, atol=0.3)
    assert np.all(bounds[0] < true - 1.0)


def test_one_sample_iwae_is_the_elbo_on_a_vae():
    family = _family()
    x = (jax.random.uniform(jax.random.key(1), (256, 8, 8, 1)) < 0.3).astype(jnp.float32)
    params = family.model.init(jax.random.key(0), x)["params"]
    mean, log_variance = family.encode(params, x)

    def log_joint(z):
        return family.log_likelihood(params, x, z, None) + lk.standard_normal_log_density(z)

    one_sample = float(jnp.mean(lk.iwae_log_likelihood(log_joint, mean, log_variance,
                                                        jax.random.key(2), 1, 1)))
    recon, kl = family.per_example_terms(params, {"image": x}, jax.random.key(3))
    elbo = float(jnp.mean(-recon - kl))
    assert one_sample == pytest.approx(elbo, rel=0.01)


def test_reparameterised_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        eps = jax.random.normal(jax.random.key(0), (4000, 3), jnp.float64)
        target = jnp.array([0.5, -1.0, 2.0])

        def expected_loss(theta):  # E_q[|z - target|^2] with z = mean + sigma * eps
            mean, log_variance = theta[:3], theta[3:]
            z = mean + jnp.exp(0.5 * log_variance) * eps
            return jnp.mean(jnp.sum((z - target) ** 2, -1))

        theta = jnp.array([0.1, 0.2, -0.3, -0.5, 0.0, 0.4])
        grad = jax.grad(expected_loss)(theta)
        h = 1e-6
        numeric = jnp.array([(expected_loss(theta.at[i].add(h))
                              - expected_loss(theta.at[i].add(-h))) / (2 * h) for i in range(6)])
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
        # And the estimator is unbiased for the closed form 2(mean - target), exp(lv).
        np.testing.assert_allclose(grad[:3], 2 * (theta[:3] - target), atol=0.1)
        np.testing.assert_allclose(grad[3:], jnp.exp(theta[3:]), atol=0.1)


@pytest.mark.parametrize("decoder", lk.DECODERS)
def test_module_and_family_shapes(decoder):
    family = _family()
    channels = lk.decoder_channels(decoder, 1)
    x = jnp.zeros((5, 8, 8, 1))
    enc = Encoder(latent_dim=4, features=(8, 16), hidden=32)
    mean, log_variance = enc.apply(enc.init(jax.random.key(0), x), x)
    chex.assert_shape([mean, log_variance], (5, 4))
    dec = Decoder((8, 8, 1), channels, features=(16, 8), hidden=32)
    out = dec.apply(dec.init(jax.random.key(0), mean), mean)
    chex.assert_shape(out, (5, 8, 8, channels))
    chex.assert_shape(lk.decoder_log_likelihood(x, out, decoder), (5,))
    state = family.init(jax.random.key(0), {"image": x, "label": jnp.zeros(5, jnp.int32)})
    state = state.replace(rng=root_key_data(0))
    chex.assert_shape(family.sample(state, jax.random.key(1), 7), (7, 8, 8, 1))


def test_decoder_likelihoods_against_numpy():
    x = np.array([[0.0, 1.0, 0.3]], np.float32).reshape(1, 1, 3, 1)
    out = np.array([[-2.0, 3.0, 0.5]], np.float32).reshape(1, 1, 3, 1)
    p = 1 / (1 + np.exp(-out))
    bernoulli = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))
    np.testing.assert_allclose(lk.decoder_log_likelihood(x, out, "bernoulli"), [bernoulli],
                               rtol=1e-5)
    gauss = np.sum(-0.5 * np.log(2 * np.pi * 0.01) - (x - out) ** 2 / (2 * 0.01))
    np.testing.assert_allclose(lk.decoder_log_likelihood(x, out, "gaussian_fixed",
                                                         np.log(0.01)), [gauss], rtol=1e-5)


def test_family_rejects_unknown_decoder():
    from jaxgen.core.config import load
    from jaxgen.families.vae import VAEFamily
    config = load(f"{ROOT}/experiments/vae_digits.py", ["model.decoder=poisson"])
    with pytest.raises(ConfigError, match="model.decoder"):
        VAEFamily(config, DataSpec((8, 8, 1), 10, 16))


@pytest.mark.parametrize("levels", [17, 256])
def test_the_discretised_decoder_sums_to_one_over_the_pixel_grid(levels):
    grid = jnp.linspace(0.0, 1.0, levels).reshape(levels, 1, 1, 1)  # one pixel per "image"
    for mean, log_variance in ((0.3, -9.0), (0.02, -5.0), (0.97, -1.0), (0.5, -14.0)):
        output = jnp.broadcast_to(jnp.asarray([mean, 0.0]), (levels, 1, 1, 2))
        # The raw log-variance channel: the floor's softplus maps it to about log_variance.
        output = output.at[..., 1].set(log_variance)
        log_p = lk.decoder_log_likelihood(grid, output, "discretized_gaussian",
                                          num_levels=levels)
        assert float(jnp.sum(jnp.exp(log_p))) == pytest.approx(1.0, abs=1e-4)


def test_the_learned_variance_floor_is_a_key_and_bounds_the_density():
    x = jnp.full((1, 1, 1, 1), 0.5)
    output = jnp.asarray([0.5, -50.0]).reshape(1, 1, 1, 2)  # the mean exact, variance -> 0
    bound = lambda floor: float(lk.decoder_log_likelihood(  # noqa: E731
        x, output, "gaussian_learned", min_log_variance=floor)[0])
    # At the floor the density peaks at exp(-floor / 2) / sqrt(2 pi).
    assert bound(-6.0) == pytest.approx(3.0 - 0.5 * np.log(2 * np.pi), abs=1e-3)
    assert bound(-14.0) == pytest.approx(7.0 - 0.5 * np.log(2 * np.pi), abs=1e-3)
    # -6 caps dequantised 8-bit pixels at (log 256 - 2.08) / log 2 = 5.0 bits/dim; -14 does not.
    assert (np.log(256) - bound(-6.0)) / np.log(2) == pytest.approx(5.0, abs=0.01)
    assert np.log(256) - bound(-14.0) < 0


def test_the_discretised_decoder_reports_bits_per_dim_of_the_raw_pixels():
    from jaxgen.core.config import load
    from jaxgen.families.vae import VAEFamily
    config = load(f"{ROOT}/experiments/vae_digits.py",
                  ["model.decoder=discretized_gaussian", "data.binarize=False"])
    family = VAEFamily(config, DataSpec((8, 8, 1), 10, 16))
    assert family.discrete_offset == 0.0 and family.num_levels == 17
    with pytest.raises(ConfigError, match="raw pixel grid"):
        VAEFamily(load(f"{ROOT}/experiments/vae_digits.py", [
            "model.decoder=discretized_gaussian", "data.binarize=False",
            "data.dequantize=True"]), DataSpec((8, 8, 1), 10, 16))


def _float64_discretized_log_likelihood(x, mean, log_scale, num_levels):
    """The discretised Gaussian in float64 from the same float32 inputs, each bin reflected to
    the lower tail so that no difference of CDFs cancels (exact to ~1e-13 here)."""
    from scipy.special import log_ndtr
    x, mean, log_scale = (np.asarray(a, np.float64) for a in (x, mean, log_scale))
    inv_std, half_bin = np.exp(-log_scale), 1.0 / (num_levels - 1)
    upper, lower = inv_std * (x - mean + half_bin), inv_std * (x - mean - half_bin)
    flip = upper + lower > 0
    lo, hi = np.where(flip, -upper, lower), np.where(flip, -lower, upper)
    inner = log_ndtr(hi) + np.log1p(-np.exp(log_ndtr(lo) - log_ndtr(hi)))
    return np.where(x < -1 + 1e-3, log_ndtr(upper), np.where(x > 1 - 1e-3, log_ndtr(-lower),
                                                           inner))


@pytest.mark.parametrize("denoiser,std,error", [
    ("poor", 1.0, 1.0), ("very poor", 3.0, 2.0), ("good", 0.01, 0.02),
    ("sharp", 1e-3, 0.01), ("confidently wrong", 0.05, 1.0)])
def test_the_discretised_gaussian_matches_float64_in_float32(denoiser, std, error):
    """Issue 39: the CDF difference cancelled in float32 (a poor denoiser's L0 was 6e-3 off).
    Per pixel within 1e-5 relative of float64, and so is the sum a bound reports."""
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, size=4096) / 255 * 2 - 1).astype(np.float32)
    mean = (x + error * rng.standard_normal(4096)).astype(np.float32)
    log_scale = np.full(4096, np.log(std), np.float32)
    got = np.asarray(jax.jit(lk.discretized_gaussian_log_likelihood, static_argnums=3)(
        x, mean, log_scale, 256), np.float64)
    exact = _float64_discretized_log_likelihood(x, mean, log_scale, 256)
    # atol: a bin of probability 1 - 1e-12 or closer (float32's erfc underflows past 1e-30).
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-12)
    assert abs(got.sum() - exact.sum()) <= 1e-6 * abs(exact.sum())
    gradient = jax.grad(lambda m, s: lk.discretized_gaussian_log_likelihood(x, m, s, 256).sum(),
                        argnums=(0, 1))(jnp.asarray(mean), jnp.asarray(log_scale))
    assert all(bool(jnp.isfinite(g).all()) for g in gradient)


def test_the_old_cdf_difference_fails_the_float64_check():
    """The check above can fail: the former 0.5 (1 + erf) difference, for a poor denoiser."""
    rng = np.random.default_rng(0)
    x = (rng.integers(1, 255, size=4096) / 255 * 2 - 1).astype(np.float32)
    mean = (x + rng.standard_normal(4096)).astype(np.float32)
    inv_std, half_bin = np.float32(1.0), np.float32(1 / 255)
    cdf = lambda t: 0.5 * (1.0 + jax.lax.erf(t / np.sqrt(2.0)))  # noqa: E731
    old = np.log(np.maximum(cdf(inv_std * (x - mean + half_bin))
                            - cdf(inv_std * (x - mean - half_bin)), 1e-12))
    exact = _float64_discretized_log_likelihood(x, mean, np.zeros(4096, np.float32), 256)
    assert np.max(np.abs(old - exact) / np.abs(exact)) > 1e-4
