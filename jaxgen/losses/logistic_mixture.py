"""The discretised mixture of logistics of PixelCNN++ (Salimans et al. 2017, sec. 2.1-2.2):
the distribution of one pixel's C channels on a grid of L levels in [-1, 1], given the network's
output at that pixel.

A pixel's output holds K mixture logits, then per channel K means and K log-scales and, for RGB,
K coefficients tanh(.) that make the channels autoregressive within the pixel (eq. 3):

    mu_R = m_R,   mu_G = m_G + a x_R,   mu_B = m_B + b x_R + c x_G.

Each channel's probability is the logistic's mass over its bin, [x - 1/(L-1), x + 1/(L-1)], with
the edge bins reaching to -inf and +inf (eq. 2); the channels of a component multiply, the
components mix, all in log space (log-sum-exp).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MIN_LOG_SCALE = -7.0  # as the paper's code: keeps the densities finite


def num_outputs(channels: int, num_mixtures: int) -> int:
    """Network outputs per pixel: K logits + per channel K means, K log-scales (and for RGB
    K coupling coefficients per channel): 3K for one channel, 10K for three."""
    if channels == 1:
        return 3 * num_mixtures
    if channels == 3:
        return 10 * num_mixtures
    raise ValueError(f"the logistic mixture models 1 or 3 channels, not {channels}")


def unpack(output: jax.Array, channels: int, num_mixtures: int):
    """output [..., num_outputs] -> (logits [..., K], means [..., C, K], log_scales [..., C, K],
    coefficients [..., C, K] or None for one channel)."""
    k = num_mixtures
    logits = output[..., :k]
    per_channel = 3 if channels == 3 else 2
    rest = output[..., k:].reshape(output.shape[:-1] + (channels, per_channel * k))
    means = rest[..., :k]
    log_scales = jnp.maximum(rest[..., k:2 * k], MIN_LOG_SCALE)
    coefficients = jnp.tanh(rest[..., 2 * k:3 * k]) if channels == 3 else None
    return logits, means, log_scales, coefficients


def coupled_means(means: jax.Array, coefficients: jax.Array | None, x: jax.Array) -> jax.Array:
    """means [..., C, K] with channel c's shifted by the values of channels < c (eq. 3);
    x [..., C]."""
    if coefficients is None:
        return means
    x = x[..., None]  # [..., C, 1]
    green = means[..., 1, :] + coefficients[..., 0, :] * x[..., 0, :]
    blue = (means[..., 2, :] + coefficients[..., 1, :] * x[..., 0, :]
            + coefficients[..., 2, :] * x[..., 1, :])
    return jnp.stack([means[..., 0, :], green, blue], axis=-2)


def log_prob(x: jax.Array, output: jax.Array, num_levels: int, num_mixtures: int) -> jax.Array:
    """log p(x) in nats, summed over pixels: x [B, H, W, C] on the grid of num_levels values
    in [-1, 1]; output [B, H, W, num_outputs] -> [B]."""
    channels = x.shape[-1]
    logits, means, log_scales, coefficients = unpack(output, channels, num_mixtures)
    means = coupled_means(means, coefficients, x)
    centred = x[..., None] - means  # [B, H, W, C, K]
    inverse_scale = jnp.exp(-log_scales)
    half_bin = 1.0 / (num_levels - 1)
    plus = inverse_scale * (centred + half_bin)
    minus = inverse_scale * (centred - half_bin)
    log_cdf_plus = plus - jax.nn.softplus(plus)  # log sigmoid(plus): the lowest bin
    log_survival_minus = -jax.nn.softplus(minus)  # log (1 - sigmoid(minus)): the highest bin
    mass = jax.nn.sigmoid(plus) - jax.nn.sigmoid(minus)
    middle = inverse_scale * centred
    # Where the bin's mass underflows float32, its density times the bin width (the paper's).
    log_density_mid = middle - log_scales - 2.0 * jax.nn.softplus(middle)
    log_mass = jnp.where(mass > 1e-5, jnp.log(jnp.maximum(mass, 1e-12)),
                         log_density_mid + math.log(2.0 * half_bin))
    level = jnp.round((x + 1.0) / (2.0 * half_bin))[..., None]
    log_bin = jnp.where(level <= 0, log_cdf_plus,
                        jnp.where(level >= num_levels - 1, log_survival_minus, log_mass))
    per_component = jnp.sum(log_bin, axis=-2) + jax.nn.log_softmax(logits, axis=-1)
    per_pixel = jax.nn.logsumexp(per_component, axis=-1)
    return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)


def to_grid(values: jax.Array, num_levels: int) -> jax.Array:
    """Values in R -> the nearest of the num_levels grid values in [-1, 1]."""
    level = jnp.clip(jnp.round((values + 1.0) / 2.0 * (num_levels - 1)), 0, num_levels - 1)
    return level * (2.0 / (num_levels - 1)) - 1.0


def sample(rng: jax.Array, output: jax.Array, channels: int, num_levels: int,
           num_mixtures: int) -> jax.Array:
    """One draw of a pixel per row: output [B, num_outputs] -> x [B, C] on the grid. A
    component by the Gumbel-max trick, then channel after channel a logistic draw rounded to
    its bin (exactly the discretised distribution), each channel's mean shifted by the values
    already drawn."""
    logits, means, log_scales, coefficients = unpack(output, channels, num_mixtures)
    pick_rng, *channel_rngs = jax.random.split(rng, channels + 1)
    component = jax.random.categorical(pick_rng, logits, axis=-1)  # [B]
    chosen = jax.nn.one_hot(component, num_mixtures, dtype=output.dtype)[:, None, :]
    means, log_scales = jnp.sum(means * chosen, -1), jnp.sum(log_scales * chosen, -1)
    coefficients = None if coefficients is None else jnp.sum(coefficients * chosen, -1)
    values = []
    for c in range(channels):
        mean = means[:, c]
        if c == 1:
            mean = mean + coefficients[:, 0] * values[0]
        elif c == 2:
            mean = mean + coefficients[:, 1] * values[0] + coefficients[:, 2] * values[1]
        u = jax.random.uniform(channel_rngs[c], mean.shape, minval=1e-5, maxval=1.0 - 1e-5)
        logistic = mean + jnp.exp(log_scales[:, c]) * (jnp.log(u) - jnp.log1p(-u))
        values.append(to_grid(logistic, num_levels))
    return jnp.stack(values, axis=-1)
