"""The Gaussian diffusion process of Ho et al. (2020): q(x_t | x_0), the posterior
q(x_{t-1} | x_t, x_0), the three parameterisations of the denoiser's output, and the
variational bound.

Timesteps are indices i = t - 1 in 0..T-1 throughout (the network sees i). A denoiser is a
function (x_t, index [B]) -> the network's output (eps, x0 or v, by `prediction`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxgen.diffusion.schedules import Schedule
from jaxgen.losses.likelihoods import discretized_gaussian_log_likelihood, normal_kl

PREDICTIONS = ("eps", "x0", "v")

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]


def gather(values: jax.Array, index: jax.Array, ndim: int = 4) -> jax.Array:
    """values [T] at index [B] -> [B, 1, 1, 1] for broadcasting over images."""
    return values[index].reshape((-1,) + (1,) * (ndim - 1))


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


@dataclasses.dataclass(frozen=True)
class GaussianProcess:
    """schedule: the noise schedule; prediction: what the denoiser outputs (eps | x0 | v);
    learn_variance: the denoiser outputs twice the channels, the second half v in [-1, 1]
    interpolating the reverse variance between beta~_t and beta_t in the log domain
    (Nichol & Dhariwal 2021, eq. 15); else p's variance is fixed_variance: beta~_t ("small")
    or beta_t ("large"; Ho et al. 2020 sec. 3.2 find both work, and use it on CIFAR-10)."""
    schedule: Schedule
    prediction: str = "eps"
    learn_variance: bool = False
    fixed_variance: str = "small"

    @property
    def explicit_variance(self) -> bool:
        """Whether samplers need `model_log_variance`: not when it is beta~_t, their default."""
        return self.learn_variance or self.fixed_variance == "large"

    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_steps

    def _roots(self, index):
        """(sqrt(abar_t), sqrt(1 - abar_t)) at index, [B, 1, 1, 1] (float64-derived)."""
        s = self.schedule
        return gather(s.sqrt_alpha_bar, index), gather(s.sqrt_one_minus_alpha_bar, index)

    def q_sample(self, x0, index, noise):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: q(x_t | x_0) (Ho et al. 2020, eq. 4)."""
        a, b = self._roots(index)
        return a * x0 + b * noise

    def target(self, x0, noise, index):
        """What the network regresses: eps, x0, or v = sqrt(abar) eps - sqrt(1 - abar) x0
        (Salimans & Ho 2022)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a, b = self._roots(index)
        return a * noise - b * x0

    def split(self, output):
        """The network's output -> (the prediction, the variance channels v or None)."""
        if not self.learn_variance:
            return output, None
        return jnp.split(output, 2, axis=-1)

    def to_eps_x0(self, output, x_t, index):
        """The network's output -> (eps, x0) at x_t: the inverse of `target`."""
        output = self.split(output)[0]
        a, b = self._roots(index)
        if self.prediction == "eps":
            return output, (x_t - b * output) / a
        if self.prediction == "x0":
            return (x_t - a * output) / b, output
        return b * x_t + a * output, a * x_t - b * output

    def x0_from_eps(self, x_t, eps, index):
        a, b = self._roots(index)
        return (x_t - b * eps) / a

    def posterior_mean(self, x0, x_t, index):
        """Mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7)."""
        s = self.schedule
        return gather(s.posterior_mean_x0, index) * x0 + gather(s.posterior_mean_xt, index) * x_t

    def model_log_variance(self, index, output=None):
        """log of p's variance at index [B], [B, 1, 1, 1] or, learned, the shape of x:
        beta~_t ("fixed small"; at t = 1 that of t = 2, as beta~_1 = 0), beta_t ("fixed
        large"; at t = 1 beta~_2, as improved-diffusion), or from the network's output
        exp(f log beta_t + (1 - f) log beta~_t), f = (v + 1) / 2."""
        low = gather(self.schedule.posterior_log_variance_clipped, index)
        v = None if output is None else self.split(output)[1]
        if v is None:
            if self.fixed_variance == "large":
                return gather(self.schedule.large_log_variance, index)
            return low
        high = gather(self.schedule.log_betas, index)
        fraction = (v + 1.0) / 2.0
        return fraction * high + (1.0 - fraction) * low

    # The variational bound (Ho et al. 2020, eq. 5).

    def bound_term(self, denoise: Denoiser, x0, index, noise, num_levels: int,
                   clip_x0: bool = True):
        """L_{t-1} for the timesteps `index` [B] (L_0, the discrete decoder over num_levels
        grey levels, at index 0): [B]."""
        x_t = self.q_sample(x0, index, noise)
        return self.bound_term_of(denoise(x_t, index), x0, x_t, index, num_levels, clip_x0)

    def bound_term_of(self, output, x0, x_t, index, num_levels: int, clip_x0: bool = True):
        """bound_term of the network's output at x_t (training reuses its forward pass)."""
        _, x0_hat = self.to_eps_x0(output, x_t, index)
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0) if clip_x0 else x0_hat
        model_mean = self.posterior_mean(x0_hat, x_t, index)
        model_log_var = self.model_log_variance(index, output)
        true_log_var = jnp.log(jnp.maximum(gather(self.schedule.posterior_variance, index),
                                           1e-20))
        kl = normal_kl(self.posterior_mean(x0, x_t, index), true_log_var, model_mean,
                       model_log_var)
        decoder_nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var,
                                                           num_levels)
        return _sum_per_example(jnp.where(index.reshape(-1, 1, 1, 1) == 0, decoder_nll, kl))

    def prior_term(self, x0):
        """L_T = KL(q(x_T | x_0) || N(0, I)): [B]."""
        s = self.schedule
        return _sum_per_example(normal_kl(s.sqrt_alpha_bar[-1] * x0,
                                          2.0 * jnp.log(s.sqrt_one_minus_alpha_bar[-1]), 0.0,
                                          0.0))

    def variational_bound(self, denoise: Denoiser, x0, rng, num_levels: int,
                          num_terms: int = 0, clip_x0: bool = True):
        """-log p(x0) <= L_T + sum_t L_{t-1}, nats [B]. With num_terms = K > 0 the sum is
        estimated without bias from K stratified timesteps (one per block of T/K)."""
        T = self.num_timesteps
        K = num_terms or T
        offset_rng, noise_rng = jax.random.split(rng)
        offset = jax.random.randint(offset_rng, (x0.shape[0],), 0, T // K) if K < T else (
            jnp.zeros((x0.shape[0],), jnp.int32))

        def step(total, k):
            index = offset + k * (T // K)
            noise = jax.random.normal(jax.random.fold_in(noise_rng, k), x0.shape, x0.dtype)
            return total + self.bound_term(denoise, x0, index, noise, num_levels,
                                           clip_x0), None

        total, _ = jax.lax.scan(step, jnp.zeros((x0.shape[0],)), jnp.arange(K))
        return self.prior_term(x0) + total * (T / K)

    def forward_strip(self, x0, rng, num_points: int = 8):
        """x0 [H, W, C] noised at evenly spaced t -> [num_points, H, W, C]."""
        index = jnp.linspace(0, self.num_timesteps - 1, num_points).round().astype(jnp.int32)
        noise = jax.random.normal(rng, (num_points,) + x0.shape)
        return self.q_sample(jnp.broadcast_to(x0, noise.shape), index, noise)
