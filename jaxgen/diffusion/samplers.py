"""Reverse-process samplers and guidance, kept apart from the process and the networks.

A sampler is a registered pair: the timesteps it visits and one reverse step. A new one is one
decorated function (the way score_sde registers its predictors):

    @register("my_sampler", timesteps=all_timesteps)
    def my_step(process, x_t, eps, x0, pair, noise, eta): ...

Guidance wraps the denoiser: an `EpsX0` function (x_t, index [B]) -> (eps, x0, log-variance
of p(x_{t-1} | x_t), or None for the fixed beta~_t) becomes another.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.diffusion.process import GaussianProcess, gather

log = logging.getLogger("jaxgen")

EpsX0 = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array | None]]
# (process, x_t, eps, x0, pair [2] int32 (i, i_prev), noise, eta, log_variance) -> x_{t_prev}
StepFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class Sampler:
    # (T, steps, spacing) -> indices, decreasing
    timesteps: Callable[[int, int, str], np.ndarray]
    step: StepFn


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, timesteps: Callable[[int, int, str], np.ndarray]):
    def decorate(step: StepFn) -> StepFn:
        SAMPLERS[name] = Sampler(timesteps, step)
        return step
    return decorate


SPACINGS = ("linspace", "leading", "trailing")


def all_timesteps(num_timesteps: int, steps: int, spacing: str = "linspace") -> np.ndarray:
    del steps, spacing
    return np.arange(num_timesteps)[::-1]


def spaced_timesteps(num_timesteps: int, steps: int, spacing: str = "linspace") -> np.ndarray:
    """A subsequence of `steps` timesteps, by the spacings diffusers names (Lin et al. 2024,
    table 2): "linspace", round(linspace(0, T-1, steps)) (Song et al. 2021's "linear" tau:
    from T-1 to 0); "leading", 0, T/steps, 2T/steps, ... (never T-1; diffusers' default);
    "trailing", T-1, T-1-T/steps, ... (never 0)."""
    if spacing == "leading":
        indices = np.arange(steps) * (num_timesteps // steps)
    elif spacing == "trailing":
        indices = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)) - 1
    else:
        indices = np.round(np.linspace(0, num_timesteps - 1, steps))
    return np.unique(indices.astype(np.int32))[::-1]


def timestep_pairs(sampler: str, num_timesteps: int, steps: int,
                   spacing: str = "linspace") -> np.ndarray:
    """[(i, i_prev)] from the largest i down; i_prev = -1 at the end (abar = 1): int32 [S, 2].
    With "leading" or "trailing" spacing and steps dividing T, i_prev = i - T/steps as in
    diffusers' DDIMScheduler."""
    indices = SAMPLERS[sampler].timesteps(num_timesteps, steps, spacing)
    return np.stack([indices, np.append(indices[1:], -1)], axis=1).astype(np.int32)


@register("ddpm", timesteps=all_timesteps)
def ddpm_step(process: GaussianProcess, x_t, eps, x0, pair, noise, eta, log_variance=None):
    """Ancestral step (Ho et al. 2020, Algorithm 2) with variance beta~_t, or the given one:
    learned (Nichol & Dhariwal 2021) or beta_t ("fixed large")."""
    del eps, eta
    index = jnp.full((x_t.shape[0],), pair[0])
    mean = process.posterior_mean(x0, x_t, index)
    if log_variance is None:
        return mean + jnp.sqrt(process.schedule.posterior_variance[pair[0]]) * noise
    return mean + jnp.exp(0.5 * log_variance) * noise


@register("ddim", timesteps=spaced_timesteps)
def ddim_step(process: GaussianProcess, x_t, eps, x0, pair, noise, eta, log_variance=None):
    """DDIM (Song et al. 2021, eq. 12):
    x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
    sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev). A learned
    variance is not used (as in improved-diffusion's DDIM)."""
    del x_t, log_variance
    alpha_bar = process.schedule.alpha_bar
    abar = alpha_bar[pair[0]]
    abar_prev = jnp.where(pair[1] >= 0, alpha_bar[jnp.maximum(pair[1], 0)], 1.0)
    sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
    return jnp.sqrt(abar_prev) * x0 + direction + sigma * noise


# Guidance.

def unguided(process: GaussianProcess, model: Callable[[jax.Array, jax.Array], jax.Array]
             ) -> EpsX0:
    """model: (x_t, index) -> the network's output."""
    def eps_x0(x_t, index):
        output = model(x_t, index)
        return (*process.to_eps_x0(output, x_t, index),
                process.model_log_variance(index, output) if process.explicit_variance
                else None)
    return eps_x0


def classifier_free(process: GaussianProcess, model: Callable, condition, null_condition,
                    scale: float) -> EpsX0:
    """eps = (1 + w) eps(x, y) - w eps(x, null) (Ho & Salimans 2022, eq. 6), both halves in
    one batch; a learned variance is the conditional one (as GLIDE). model: (x_t, index,
    condition) -> the network's output; condition and null_condition: arrays or pytrees of
    arrays with the batch first (labels [B]; a prompt's tokens [B, L]), the null one the
    unconditional input (the null label, the empty prompt)."""
    def eps_x0(x_t, index):
        both_x, both_index = jnp.concatenate([x_t, x_t]), jnp.concatenate([index, index])
        both = model(both_x, both_index, jax.tree.map(lambda c, n: jnp.concatenate([c, n]),
                                                      condition, null_condition))
        eps_cond, eps_null = jnp.split(process.to_eps_x0(both, both_x, both_index)[0], 2)
        eps = (1.0 + scale) * eps_cond - scale * eps_null
        log_variance = None
        if process.explicit_variance:
            log_variance = process.model_log_variance(index, jnp.split(both, 2)[0])
        return eps, process.x0_from_eps(x_t, eps, index), log_variance
    return eps_x0


def classifier_guided(process: GaussianProcess, eps_x0: EpsX0,
                      log_prob_gradient: Callable[[jax.Array, jax.Array], jax.Array],
                      scale: float) -> EpsX0:
    """Classifier guidance in its epsilon form (Dhariwal & Nichol 2021, Algorithm 2):
    eps <- eps - sqrt(1 - abar) * s * grad_x log p(y | x_t).
    log_prob_gradient: (x_t, index) -> grad_x log p(y | x_t, t) [B, ...]."""
    def guided(x_t, index):
        eps, _, log_variance = eps_x0(x_t, index)
        root = gather(process.schedule.sqrt_one_minus_alpha_bar, index)
        eps = eps - root * scale * log_prob_gradient(x_t, index)
        return eps, process.x0_from_eps(x_t, eps, index), log_variance
    return guided


# The reverse process.

_last_reported: list[int] = [-1]


def _report_progress(k, total: int) -> None:
    # Called once per device shard under SPMD: report each step once.
    k = int(k)
    if k != _last_reported[0] and jax.process_index() == 0:
        _last_reported[0] = k
        log.info("sampling: step %d of %d", k, total)


def run(process: GaussianProcess, eps_x0: EpsX0, sampler: str, steps: int, eta: float,
        x_T: jax.Array, rng: jax.Array, keep: int = 0, clip_x0: bool = True,
        spacing: str = "linspace") -> tuple[jax.Array, jax.Array | None]:
    """The reverse process from x_T in one lax.scan: (x_0, `keep` snapshots [keep, ...] along
    the way, x_T first). The last step adds no noise. clip_x0: predicted x0 clipped to [-1, 1]
    (pixels), with eps made consistent with it so that clipping never adds energy (diffusers'
    use_clipped_model_output=True). spacing: which timesteps a subsequence visits."""
    step_fn = SAMPLERS[sampler].step
    pairs = jnp.asarray(timestep_pairs(sampler, process.num_timesteps, steps, spacing))
    total = pairs.shape[0]
    snapshot_at = set(np.linspace(0, total - 1, keep).round().astype(int).tolist()) if keep \
        else set()
    snapshot_mask = jnp.asarray([k in snapshot_at for k in range(total)])
    report_every = max(total // 10, 1)
    roots = process.schedule.sqrt_alpha_bar, process.schedule.sqrt_one_minus_alpha_bar

    def body(x, inputs):
        k, pair, take = inputs
        if total >= 100:  # long runs: a log line every 10% of the steps
            jax.lax.cond(k % report_every == 0,
                         lambda: jax.debug.callback(_report_progress, k, total),
                         lambda: None)
        noise = jax.random.normal(jax.random.fold_in(rng, k), x.shape)
        noise = jnp.where(pair[1] >= 0, noise, 0.0)
        eps, x0, log_variance = eps_x0(x, jnp.full((x.shape[0],), pair[0]))
        if clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
        eps = (x - roots[0][pair[0]] * x0) / roots[1][pair[0]]
        x_next = step_fn(process, x, eps, x0, pair, noise, eta, log_variance)
        return x_next, (jnp.where(take, x, 0.0) if keep else None)

    x, snapshots = jax.lax.scan(body, x_T, (jnp.arange(total), pairs, snapshot_mask))
    if keep:
        snapshots = snapshots[np.array(sorted(snapshot_at))]
    return x, snapshots
