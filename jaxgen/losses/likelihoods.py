"""Log-densities, the Gaussian KL, the discretised Gaussian decoder and the importance-
weighted bound, per example in nats.

Shapes: x [B, H, W, C]; decoder outputs [B, H, W, C] (or [B, H, W, 2C] for a learned
variance); latents [B, L]. Per-example results are [B]; elementwise ones keep their shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

DECODERS = ("bernoulli", "gaussian_fixed", "gaussian_learned", "discretized_gaussian")
LEARNED_VARIANCE = ("gaussian_learned", "discretized_gaussian")

# A learned per-pixel variance can shrink without bound on pixels that are always 0
# (MNIST borders), sending a density to infinity; it is floored (Rybkin et al. 2021). The
# floor bounds the likelihood: a Gaussian density is at most exp(-floor / 2) / sqrt(2 pi),
# so with -6 a density on dequantised 8-bit pixels cannot go below 5.0 bits/dim (issue 13).
# The default, -10 (std 0.0067 on [0, 1], 1.7 8-bit bins), bounds dequantised 8-bit data at
# 2.11 bits/dim, far below the per-pixel histogram (4.59 on Fashion-MNIST) and what the VAEs
# here reach; lower floors bound nothing more but trained worse: at the beta ablation's recipe
# (1,000 steps) -6 / -10 / -12 / -14 gave 6.14 / 5.46 / 6.21 / 7.18 bits/dim, -14 with gradient
# norms of 1e7 (BUILD_NOTES.md). A discretised decoder needs no floor to stay bounded (a bin's
# probability is at most 1); the floor keeps its scale finite.
MIN_LOG_VARIANCE = -10.0


def _sum_pixels(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """Elementwise log N(x; mean, exp(log_variance))."""
    return -0.5 * (math.log(2 * math.pi) + log_variance
                   + jnp.square(x - mean) * jnp.exp(-log_variance))


def normal_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))), elementwise, nats:
    0.5 (exp(lv1 - lv2) + (m1 - m2)^2 exp(-lv2) - 1 - lv1 + lv2)."""
    return 0.5 * (jnp.exp(log_var1 - log_var2) + jnp.square(mean1 - mean2) * jnp.exp(-log_var2)
                  - 1.0 - log_var1 + log_var2)


def kl_standard_normal(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_variance)) || N(0, I)) (Kingma & Welling 2014, appendix B):
    mean, log_variance [B, L] -> [B]."""
    return jnp.sum(normal_kl(mean, log_variance, 0.0, 0.0), axis=-1)


def log_standard_normal_cdf(t: jax.Array) -> jax.Array:
    """log Phi(t), accurate to rounding in float32 on both sides: jax's log_ndtr takes
    log(Phi(t)) for 0 < t < 8, which keeps only eps / (1 - Phi(t)) of 1 - Phi(t) (3e-4
    relative at t = 3.7); above 0 this is log1p(-Phi(-t)), Phi(-t) = erfc(t / sqrt 2) / 2."""
    positive = t > 0.0
    upper_tail = 0.5 * jax.scipy.special.erfc(jnp.where(positive, t, 0.0) / math.sqrt(2.0))
    return jnp.where(positive, jnp.log1p(-upper_tail),
                     jax.scipy.special.log_ndtr(jnp.where(positive, 0.0, t)))


def log1mexp(d: jax.Array) -> jax.Array:
    """log(1 - exp(d)) for d < 0, accurate to rounding (Maechler 2012): log(-expm1(d)) near 0,
    log1p(-exp(d)) below -log 2, where 1 - exp(d) would round like any number near 1."""
    near_zero = d > -math.log(2.0)
    return jnp.where(near_zero, jnp.log(-jnp.expm1(jnp.where(near_zero, d, -1.0))),
                     jnp.log1p(-jnp.exp(jnp.where(near_zero, -1.0, d))))


# Gauss-Legendre nodes and weights on [-1, 1] for narrow bins (log_normal_bin_probability).
_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = (a.astype(np.float32)
                                      for a in np.polynomial.legendre.leggauss(8))


def log_normal_bin_probability(center: jax.Array, half_width: jax.Array) -> jax.Array:
    """log(Phi(c + h) - Phi(c - h)) of the standard normal, h > 0, elementwise, accurate to
    ~1e-6 relative in float32 (tests/test_likelihoods.py checks it against float64).

    A CDF difference loses its digits to cancellation in float32: wherever both ends lie in one
    tail (Phi(-6) = 1e-9 is below the rounding of 1), and for any narrow bin (a poor
    denoiser's, h ~ 1e-3), where the difference is eps * Phi / (2 h phi) relative. So:
    - a narrow bin (h |c| <= 2 and h <= 1) is integrated: log phi(c) + log of
      integral_{-h}^{h} exp(-c s - s^2 / 2) ds by 8-point Gauss-Legendre, a sum of positive
      terms whose error for an integrand this smooth is ~(h c)^16 / 16!;
    - a wide bin is reflected to the lower tail (Phi's symmetry), where log Phi is exact to
      rounding (log_standard_normal_cdf), and log(Phi(u) - Phi(l)) =
      log Phi(u) + log(1 - exp(log Phi(l) - log Phi(u))) (log1mexp).
    Each branch is evaluated at safe stand-ins where it is not used, so gradients stay finite.
    """
    narrow = (half_width <= 1.0) & (half_width * jnp.abs(center) <= 2.0)
    # Narrow: integrated.
    c = jnp.where(narrow, center, 0.0)
    h = jnp.where(narrow, half_width, 1.0)
    s = h[..., None] * _LEGENDRE_NODES
    integral = h * jnp.sum(_LEGENDRE_WEIGHTS * jnp.exp(-c[..., None] * s - 0.5 * s * s), -1)
    log_narrow = -0.5 * c * c - 0.5 * math.log(2 * math.pi) + jnp.log(integral)
    # Wide: in log space on the lower tail.
    c = -jnp.abs(jnp.where(narrow, 0.0, center))
    h = jnp.where(narrow, 1.0, half_width)
    log_upper = log_standard_normal_cdf(c + h)
    log_wide = log_upper + log1mexp(log_standard_normal_cdf(c - h) - log_upper)
    return jnp.where(narrow, log_narrow, log_wide)


def discretized_gaussian_log_likelihood(x, mean, log_scale, num_levels: int):
    """log P(x) of pixels x in [-1, 1] on a grid of num_levels values, each bin
    [x - 1/(L-1), x + 1/(L-1)] of N(mean, exp(log_scale)^2); the edge bins extend to
    infinity (Ho et al. 2020, eq. 13). Elementwise, accurate in float32 for poor and good
    denoisers alike (log_normal_bin_probability; the edges through log Phi)."""
    inv_std = jnp.exp(-log_scale)
    center = inv_std * (x - mean)
    half_width = inv_std / (num_levels - 1)
    return jnp.where(x < -1.0 + 1e-3, log_standard_normal_cdf(center + half_width),
                     jnp.where(x > 1.0 - 1e-3, log_standard_normal_cdf(half_width - center),
                               log_normal_bin_probability(center, half_width)))


def decoder_log_likelihood(x: jax.Array, output: jax.Array, decoder: str,
                           fixed_log_variance: float = 0.0,
                           min_log_variance: float = MIN_LOG_VARIANCE,
                           num_levels: int = 256) -> jax.Array:
    """log p(x | z) summed over pixels: [B]. x [B, H, W, C] in [0, 1]; for
    discretized_gaussian on the grid of num_levels values k / (num_levels - 1)."""
    if decoder == "bernoulli":
        # x * logits - softplus(logits) is log Bernoulli(x; sigmoid(logits)) without overflow.
        return _sum_pixels(x * output - jax.nn.softplus(output))
    if decoder == "gaussian_fixed":
        return _sum_pixels(gaussian_log_density(x, output, jnp.full_like(output,
                                                                         fixed_log_variance)))
    if decoder == "gaussian_learned":
        mean, log_variance = split_learned(output, min_log_variance)
        return _sum_pixels(gaussian_log_density(x, mean, log_variance))
    if decoder == "discretized_gaussian":
        # The probability of x's grid bin under N(mean, var) (Ho et al. 2020, eq. 13, whose
        # pixels are in [-1, 1]: scaled there, the standard deviation doubles).
        mean, log_variance = split_learned(output, min_log_variance)
        return _sum_pixels(discretized_gaussian_log_likelihood(
            2.0 * x - 1.0, 2.0 * mean - 1.0, 0.5 * log_variance + math.log(2.0), num_levels))
    raise ValueError(f"unknown decoder '{decoder}'")


def split_learned(output: jax.Array, min_log_variance: float = MIN_LOG_VARIANCE
                  ) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, 2C] -> mean [B, H, W, C], floored log-variance [B, H, W, C]."""
    mean, raw = jnp.split(output, 2, axis=-1)
    return mean, min_log_variance + jax.nn.softplus(raw - min_log_variance)


def decoder_mean(output: jax.Array, decoder: str) -> jax.Array:
    """The mean image of p(x | z): what a picture of a sample shows."""
    if decoder == "bernoulli":
        return jax.nn.sigmoid(output)
    if decoder == "discretized_gaussian":
        # The edge bins reach to infinity, so a pixel at 0 or 1 pulls the Gaussian's mean
        # past the edge; the grid value nearest the mean is inside [0, 1].
        return jnp.clip(split_learned(output)[0], 0.0, 1.0)
    if decoder == "gaussian_learned":
        return split_learned(output)[0]
    return output


def decoder_channels(decoder: str, image_channels: int) -> int:
    return 2 * image_channels if decoder in LEARNED_VARIANCE else image_channels


def iwae_log_likelihood(log_joint_fn, mean: jax.Array, log_variance: jax.Array, rng: jax.Array,
                        num_samples: int, chunk: int) -> jax.Array:
    """The importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q
    (Burda et al. 2016), [B]. K = num_samples, drawn `chunk` at a time so memory stays
    that of `chunk` decoder passes; K = 1 is the one-sample ELBO.

    log_joint_fn: z [B, L] -> log p(x, z) [B].
    """
    if num_samples % chunk:
        raise ValueError(f"IWAE samples {num_samples} not divisible by chunk {chunk}")
    std = jnp.exp(0.5 * log_variance)

    def log_weights(key):
        # Drawn example-major, [B, chunk, L]: with JAX's partitionable threefry, example b
        # gets the same draws in a batch of any length, so padding a batch to the devices
        # changes no example's bound.
        eps = jnp.swapaxes(jax.random.normal(key, mean.shape[:1] + (chunk,) + mean.shape[1:],
                                             mean.dtype), 0, 1)
        z = mean + std * eps
        log_q = jnp.sum(gaussian_log_density(z, mean, log_variance), axis=-1)
        return jax.vmap(log_joint_fn)(z) - log_q  # [chunk, B]

    def accumulate(running, key):
        return jnp.logaddexp(running, jax.nn.logsumexp(log_weights(key), axis=0)), None

    keys = jax.random.split(rng, num_samples // chunk)
    total, _ = jax.lax.scan(accumulate, jnp.full(mean.shape[:1], -jnp.inf, mean.dtype), keys)
    return total - math.log(num_samples)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
    """z: [B, L] -> log N(z; 0, I): [B]."""
    return jnp.sum(-0.5 * (math.log(2 * math.pi) + jnp.square(z)), axis=-1)
