"""Which timesteps a diffusion train step draws: uniformly, or by importance sampling on the
second moment of each timestep's recent losses (Nichol & Dhariwal 2021, sec. 3.3, eq. 18),
which lowers the variance of the one-term estimate of L_vlb.

The loss history is part of the train state (its `model_state`), so it is checkpointed and a
resumed run draws exactly the timesteps an uninterrupted one would. All functions are pure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SAMPLINGS = ("uniform", "importance")
HISTORY = 10            # losses kept per timestep (improved-diffusion's history_per_term)
UNIFORM_FRACTION = 1e-3  # probability mass spread uniformly, so no timestep is starved


def init_history(num_timesteps: int) -> dict[str, jax.Array]:
    """losses: float32 [T, HISTORY], a ring buffer per timestep; count: int32 [T], losses seen."""
    return {"losses": jnp.zeros((num_timesteps, HISTORY), jnp.float32),
            "count": jnp.zeros((num_timesteps,), jnp.int32)}


def probabilities(history: dict[str, jax.Array]) -> jax.Array:
    """p_t [T]: uniform until every timestep has HISTORY losses, then proportional to
    sqrt(E[L_t^2]) with UNIFORM_FRACTION of the mass spread evenly."""
    num_timesteps = history["count"].shape[0]
    uniform = jnp.full((num_timesteps,), 1.0 / num_timesteps)
    weights = jnp.sqrt(jnp.mean(jnp.square(history["losses"]), axis=-1))
    weights = weights / jnp.maximum(jnp.sum(weights), 1e-30)
    weights = (1.0 - UNIFORM_FRACTION) * weights + UNIFORM_FRACTION / num_timesteps
    warm = jnp.all(history["count"] >= HISTORY) & jnp.all(jnp.isfinite(weights))
    return jnp.where(warm, weights, uniform)


def draw(rng, batch_size: int, history: dict[str, jax.Array] | None, num_timesteps: int):
    """(index [B] int32 in 0..T-1, weight [B]): weight = 1 / (T p_t) makes the weighted mean
    of any per-timestep loss an unbiased estimate of its uniform-t mean. Without a history:
    uniform draws of weight 1."""
    if history is None:
        index = jax.random.randint(rng, (batch_size,), 0, num_timesteps)
        return index, jnp.ones((batch_size,), jnp.float32)
    p = probabilities(history)
    index = jax.random.categorical(rng, jnp.log(p), shape=(batch_size,)).astype(jnp.int32)
    return index, 1.0 / (num_timesteps * p[index])


def update(history: dict[str, jax.Array], index: jax.Array, losses: jax.Array
           ) -> dict[str, jax.Array]:
    """The history with losses [B] (unweighted, gradient-free) recorded at index [B].

    Vectorised and deterministic: examples are ranked within their timestep in batch order,
    and of more than HISTORY at one timestep only the last HISTORY are written, so no two
    writes hit one slot."""
    num_timesteps = history["count"].shape[0]
    losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
    order = jnp.argsort(index, stable=True)
    sorted_index = index[order]
    rank = jnp.arange(index.shape[0]) - jnp.searchsorted(sorted_index, sorted_index, side="left")
    in_batch = jnp.zeros((num_timesteps,), jnp.int32).at[index].add(1)
    keep = rank >= in_batch[sorted_index] - HISTORY
    slot = (history["count"][sorted_index] + rank) % HISTORY
    row = jnp.where(keep, sorted_index, num_timesteps)  # out of bounds: dropped
    return {"losses": history["losses"].at[row, slot].set(losses[order], mode="drop"),
            "count": history["count"] + in_batch}
