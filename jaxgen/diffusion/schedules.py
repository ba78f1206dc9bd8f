"""Noise schedules of discrete-time diffusion: betas, alphas and their cumulative products.

Indexing: timestep t in 1..T; arrays are stored 0-based, entry t - 1 for step t.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxgen.config import ConfigError

MAX_BETA = 0.999
SCHEDULES = ("cosine", "linear")


def cosine_alpha_bar(t: np.ndarray, num_steps: int, s: float = 0.008) -> np.ndarray:
    """alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)
    (Nichol & Dhariwal 2021, eq. 17), in float64; t in [0, T]."""
    def f(u):
        return np.cos((np.asarray(u, np.float64) / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    return f(t) / f(0)


def cosine_betas(num_steps: int, s: float = 0.008) -> np.ndarray:
    """beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped at 0.999 (ibid.): [T] float64."""
    t = np.arange(num_steps + 1)
    alpha_bar = cosine_alpha_bar(t, num_steps, s)
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


def linear_betas(num_steps: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> np.ndarray:
    """Ho et al. 2020: betas linear from 1e-4 to 0.02 at T = 1000, scaled by 1000/T so
    that other T keep the same total noise: [T] float64."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * beta_1, scale * beta_T, num_steps, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """All per-step quantities, float32 [T] (entry t - 1 belongs to step t)."""
    betas: jnp.ndarray
    alphas: jnp.ndarray
    alpha_bar: jnp.ndarray
    alpha_bar_prev: jnp.ndarray  # alpha_bar(t - 1), with alpha_bar(0) = 1
    posterior_variance: jnp.ndarray  # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(name: str, num_steps: int) -> Schedule:
    if num_steps < 2:
        raise ConfigError(f"diffusion needs at least 2 timesteps, got {num_steps}")
    if name == "cosine":
        betas = cosine_betas(num_steps)
    elif name == "linear":
        betas = linear_betas(num_steps)
    else:
        raise ConfigError(f"model.schedule must be cosine or linear, got '{name}'")
    alphas = 1.0 - betas
    alpha_bar = np.cumprod(alphas)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    as32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Schedule(as32(betas), as32(alphas), as32(alpha_bar), as32(alpha_bar_prev),
                    as32(posterior_variance))
