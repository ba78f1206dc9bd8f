"""Layers several networks share: resolution changes without transposed convolutions and the
timestep embedding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """x: [B, H, W, C] -> [B, factor*H, factor*W, C]."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0,
                       flip_sin_to_cos: bool = False, freq_shift: float = 1.0) -> jax.Array:
    """Transformer sinusoids of the timestep (Vaswani et al. 2017; Ho et al. 2020):
    t [B] -> [B, dim], sin in the first half, cos in the second (flip_sin_to_cos: cos first).
    Frequencies max_period^(-k / (dim/2 - freq_shift)), k < dim/2: DDPM's shift is 1 (the
    lowest frequency exactly 1/max_period); diffusers' UNet2DModel defaults to 0."""
    half = dim // 2
    frequencies = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32)
                          / max(half - freq_shift, 1))
    angles = t.astype(jnp.float32)[:, None] * frequencies[None, :]
    waves = [jnp.sin(angles), jnp.cos(angles)]
    return jnp.concatenate(waves[::-1] if flip_sin_to_cos else waves, axis=-1)
