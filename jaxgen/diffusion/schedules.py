"""Noise schedules of discrete-time diffusion: betas, alphas and their cumulative products.

Indexing: timestep t in 1..T; arrays are stored 0-based, entry t - 1 for step t.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxgen.core.config import ConfigError

MAX_BETA = 0.999
SCHEDULES = ("cosine", "linear", "scaled_linear")


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


def scaled_linear_betas(num_steps: int, beta_1: float = 0.00085, beta_T: float = 0.012
                        ) -> np.ndarray:
    """Latent diffusion's schedule (Rombach et al. 2022; Stable Diffusion's "scaled_linear"):
    sqrt(beta_t) linear from sqrt(beta_1) to sqrt(beta_T) at T = 1000, scaled by 1000/T as
    linear_betas: [T] float64. alpha_bar_T = 0.0047 at T = 1000, where the cosine schedule
    ends at 2.4e-9: a sampler's first step from t = T divides the network's eps error by
    sqrt(alpha_bar_T) (x0 = (x_T - sqrt(1 - abar) eps) / sqrt(abar)), which pixels bound by
    clipping x0 and unbounded codes do not."""
    scale = 1000.0 / num_steps
    return scale * np.linspace(math.sqrt(beta_1), math.sqrt(beta_T), num_steps,
                               dtype=np.float64) ** 2


@dataclasses.dataclass(frozen=True)
class Schedule:
    """All per-step quantities, float32 [T] (entry t - 1 belongs to step t).

    Every coefficient is computed from the float64 betas in float64 and only then stored as
    float32, as improved-diffusion does: computed in float32, the posterior's x0
    coefficient at t = 1, beta_1 / (1 - abar_1), comes out 0.99947 instead of 1 and biases
    the decoder term L_0 of the bound by 0.02-0.04 bits/dim (issue 13)."""
    betas: jnp.ndarray
    alphas: jnp.ndarray
    alpha_bar: jnp.ndarray
    alpha_bar_prev: jnp.ndarray  # alpha_bar(t - 1), with alpha_bar(0) = 1
    posterior_variance: jnp.ndarray  # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
    sqrt_alpha_bar: jnp.ndarray
    sqrt_one_minus_alpha_bar: jnp.ndarray
    posterior_mean_x0: jnp.ndarray  # beta_t sqrt(abar_{t-1}) / (1 - abar_t); 1 at t = 1
    posterior_mean_xt: jnp.ndarray  # (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t); 0 at t = 1
    # log beta~_t, with beta~_1 = 0 replaced by beta~_2 ("clipped", as improved-diffusion).
    posterior_log_variance_clipped: jnp.ndarray
    log_betas: jnp.ndarray
    # log beta_t with beta_1 replaced by beta~_2: the "fixed large" variance (improved-diffusion)
    large_log_variance: jnp.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(name: str, num_steps: int, beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> Schedule:
    """beta_start, beta_end: those of the linear or scaled_linear schedule at T = 1000."""
    if num_steps < 2:
        raise ConfigError(f"diffusion needs at least 2 timesteps, got {num_steps}")
    if name == "cosine":
        betas = cosine_betas(num_steps)
    elif name == "linear":
        betas = linear_betas(num_steps, beta_start, beta_end)
    elif name == "scaled_linear":
        betas = scaled_linear_betas(num_steps, beta_start, beta_end)
    else:
        raise ConfigError(f"model.schedule must be one of {', '.join(SCHEDULES)}, got '{name}'")
    return schedule_from_betas(betas)


def schedule_from_betas(betas: np.ndarray) -> Schedule:
    """Every coefficient in float64 from betas [T], then stored as float32."""
    betas = np.asarray(betas, np.float64)
    alphas = 1.0 - betas
    alpha_bar = np.cumprod(alphas)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    as32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Schedule(
        betas=as32(betas), alphas=as32(alphas), alpha_bar=as32(alpha_bar),
        alpha_bar_prev=as32(alpha_bar_prev), posterior_variance=as32(posterior_variance),
        sqrt_alpha_bar=as32(np.sqrt(alpha_bar)),
        sqrt_one_minus_alpha_bar=as32(np.sqrt(1.0 - alpha_bar)),
        posterior_mean_x0=as32(betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar)),
        posterior_mean_xt=as32((1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar)),
        posterior_log_variance_clipped=as32(np.log(np.concatenate(
            [posterior_variance[1:2], posterior_variance[1:]]))),
        log_betas=as32(np.log(betas)),
        large_log_variance=as32(np.log(np.concatenate([posterior_variance[1:2], betas[1:]]))))
