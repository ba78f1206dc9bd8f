"""Layers several networks share: resolution changes without transposed convolutions and the
timestep embedding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """x: [B, H, W, C] -> [B, factor*H, factor*W, C]."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Transformer sinusoids of the timestep (Vaswani et al. 2017; Ho et al. 2020):
    t [B] -> [B, dim], sin in the first half, cos in the second."""
    half = dim // 2
    frequencies = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32)
                          / max(half - 1, 1))
    angles = t.astype(jnp.float32)[:, None] * frequencies[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
