"""Log-densities, the Gaussian KL and the importance-weighted bound, per example in nats.

Shapes: x [B, H, W, C]; decoder outputs [B, H, W, C] (or [B, H, W, 2C] for a learned
variance); latents [B, L]. Per-example results are [B].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

DECODERS = ("bernoulli", "gaussian_fixed", "gaussian_learned")

# A learned per-pixel variance can shrink without bound on pixels that are always 0
# (MNIST borders), sending the likelihood to infinity; floor it (Rybkin et al. 2021).
MIN_LOG_VARIANCE = -6.0


def _sum_pixels(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def gaussian_log_density(x: jax.Array, mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """Elementwise log N(x; mean, exp(log_variance))."""
    return -0.5 * (math.log(2 * math.pi) + log_variance
                   + jnp.square(x - mean) * jnp.exp(-log_variance))


def kl_standard_normal(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """KL(N(mean, diag exp(log_variance)) || N(0, I)) in closed form (Kingma & Welling 2014,
    appendix B): 0.5 * sum(exp(lv) + mean^2 - 1 - lv). mean, log_variance: [B, L] -> [B]."""
    return 0.5 * jnp.sum(jnp.exp(log_variance) + jnp.square(mean) - 1.0 - log_variance, axis=-1)


def decoder_log_likelihood(x: jax.Array, output: jax.Array, decoder: str,
                           fixed_log_variance: float = 0.0) -> jax.Array:
    """log p(x | z) summed over pixels: [B]."""
    if decoder == "bernoulli":
        # x * logits - softplus(logits) is log Bernoulli(x; sigmoid(logits)) without overflow.
        return _sum_pixels(x * output - jax.nn.softplus(output))
    if decoder == "gaussian_fixed":
        return _sum_pixels(gaussian_log_density(x, output, jnp.full_like(output,
                                                                         fixed_log_variance)))
    if decoder == "gaussian_learned":
        mean, log_variance = split_learned(output)
        return _sum_pixels(gaussian_log_density(x, mean, log_variance))
    raise ValueError(f"unknown decoder '{decoder}'")


def split_learned(output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, 2C] -> mean [B, H, W, C], floored log-variance [B, H, W, C]."""
    mean, raw = jnp.split(output, 2, axis=-1)
    return mean, MIN_LOG_VARIANCE + jax.nn.softplus(raw - MIN_LOG_VARIANCE)


def decoder_mean(output: jax.Array, decoder: str) -> jax.Array:
    """The mean image of p(x | z): what a picture of a sample shows."""
    if decoder == "bernoulli":
        return jax.nn.sigmoid(output)
    if decoder == "gaussian_learned":
        return split_learned(output)[0]
    return output


def decoder_channels(decoder: str, image_channels: int) -> int:
    return 2 * image_channels if decoder == "gaussian_learned" else image_channels


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
        eps = jax.random.normal(key, (chunk,) + mean.shape, mean.dtype)
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
