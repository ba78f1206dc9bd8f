"""Denoising diffusion (Ho et al. 2020) with the cosine schedule (Nichol & Dhariwal 2021),
epsilon / x0 / v prediction, DDPM and DDIM sampling, and classifier-free guidance.

Timesteps are indices i = t - 1 in 0..T-1 throughout (the network sees i).
Images are in [-1, 1].
"""

from __future__ import annotations

import logging
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxgen.config import ConfigError, base_config, require
from jaxgen.data.sources import DataSpec
from jaxgen.models.unet import UNet
from jaxgen.objectives import schedules
from jaxgen.state import TrainState, apply_gradients, make_optimizer

log = logging.getLogger("jaxgen")

PREDICTIONS = ("eps", "x0", "v")
SAMPLERS = ("ddpm", "ddim")


def default_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.family = "diffusion"
    c.data.binarize = False
    c.data.dequantize = False  # the bound's decoder is discrete: pixels stay on their grid
    c.train.ema_decay = 0.9999
    c.train.learning_rate = 2e-4
    c.train.grad_clip_norm = 1.0
    c.model.channels = 128
    c.model.channel_mults = (1, 2, 2, 2)
    c.model.num_res_blocks = 2
    c.model.attention_resolutions = (16,)
    c.model.dropout = 0.1
    c.model.num_groups = 32
    c.model.schedule = "cosine"  # cosine | linear
    c.model.num_timesteps = 1000
    c.model.prediction = "eps"  # eps | x0 | v
    c.model.conditional = False
    c.model.label_dropout = 0.0  # > 0: classifier-free guidance training (null label)
    c.sample.sampler = "ddim"  # ddim | ddpm (ancestral, all T steps)
    c.sample.steps = 50  # DDIM steps
    c.sample.eta = 0.0  # DDIM noise: 0 deterministic, 1 = DDPM's variance
    c.sample.guidance_scale = 0.0  # classifier-free guidance w
    c.sample.classifier_workdir = ""  # a trained noisy_classifier run: classifier guidance
    c.sample.classifier_scale = 0.0  # its scale s
    c.eval.vlb_timesteps = 0  # 0: the full sum over T; K: stratified estimate from K steps
    return c


def _gather(values: jax.Array, index: jax.Array, ndim: int = 4) -> jax.Array:
    """values [T] at index [B] -> [B, 1, 1, 1] for broadcasting over images."""
    return values[index].reshape((-1,) + (1,) * (ndim - 1))


def normal_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))), elementwise, nats."""
    return 0.5 * (log_var2 - log_var1 + jnp.exp(log_var1 - log_var2)
                  + jnp.square(mean1 - mean2) * jnp.exp(-log_var2) - 1.0)


def _standard_normal_cdf(x):
    return 0.5 * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x, mean, log_scale, num_levels: int):
    """log P(x) of pixels x in [-1, 1] on a grid of num_levels values, each bin
    [x - 1/(L-1), x + 1/(L-1)] of N(mean, exp(log_scale)^2); the edge bins extend to
    infinity (Ho et al. 2020, eq. 13). Elementwise."""
    half_bin = 1.0 / (num_levels - 1)
    inv_std = jnp.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (x - mean + half_bin))
    cdf_minus = _standard_normal_cdf(inv_std * (x - mean - half_bin))
    log_cdf_plus = jnp.log(jnp.maximum(cdf_plus, 1e-12))
    log_one_minus_cdf_minus = jnp.log(jnp.maximum(1.0 - cdf_minus, 1e-12))
    log_delta = jnp.log(jnp.maximum(cdf_plus - cdf_minus, 1e-12))
    return jnp.where(x < -1.0 + 1e-3, log_cdf_plus,
                     jnp.where(x > 1.0 - 1e-3, log_one_minus_cdf_minus, log_delta))


_last_reported: list[int] = [-1]


def _report_progress(k, total: int) -> None:
    # Called once per device shard under SPMD: report each step once.
    k = int(k)
    if k != _last_reported[0] and jax.process_index() == 0:
        _last_reported[0] = k
        log.info("sampling: step %d of %d", k, total)


class DiffusionFamily:
    """config.model: UNet keys (channels, channel_mults, num_res_blocks, attention_resolutions,
    dropout, num_groups), schedule, num_timesteps, prediction, conditional, label_dropout.
    config.sample: sampler, steps, eta, guidance_scale. config.eval: vlb_timesteps."""

    value_range = "symmetric"

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        m, s = config.model, config.sample
        require(m, "model", ("channels", "channel_mults", "num_res_blocks",
                             "attention_resolutions", "dropout", "num_groups", "schedule",
                             "num_timesteps", "prediction", "conditional", "label_dropout"))
        require(s, "sample", ("sampler", "steps", "eta", "guidance_scale", "classifier_workdir",
                              "classifier_scale"))
        require(config.eval, "eval", ("vlb_timesteps",))
        if m.prediction not in PREDICTIONS:
            raise ConfigError(f"model.prediction must be one of {PREDICTIONS}, got "
                              f"'{m.prediction}'")
        if s.sampler not in SAMPLERS:
            raise ConfigError(f"sample.sampler must be one of {SAMPLERS}, got '{s.sampler}'")
        if not 1 <= s.steps <= m.num_timesteps:
            raise ConfigError(f"sample.steps must be in 1..{m.num_timesteps}, got {s.steps}")
        if not 0.0 <= m.label_dropout < 1.0:
            raise ConfigError(f"model.label_dropout must be in [0, 1), got {m.label_dropout}")
        if s.guidance_scale and not (m.conditional and m.label_dropout > 0):
            raise ConfigError("sample.guidance_scale needs a model trained with "
                              "model.conditional=True and model.label_dropout > 0")
        vlb = config.eval.vlb_timesteps
        if vlb < 0 or (vlb and m.num_timesteps % vlb):
            raise ConfigError(f"eval.vlb_timesteps={vlb} must be 0 or divide "
                              f"model.num_timesteps={m.num_timesteps}")
        if m.channels % m.num_groups:
            raise ConfigError(f"model.channels={m.channels} is not divisible by "
                              f"model.num_groups={m.num_groups}")
        self.config = config
        self.data = data
        self.schedule = schedules.make_schedule(m.schedule, m.num_timesteps)
        self.num_timesteps = m.num_timesteps
        self.prediction = m.prediction
        self.num_classes = data.num_classes if m.conditional else 0
        self.label_dropout = m.label_dropout
        self.model = UNet(out_channels=self.space_shape(data)[-1], channels=m.channels,
                          channel_mults=tuple(m.channel_mults), num_res_blocks=m.num_res_blocks,
                          attention_resolutions=tuple(m.attention_resolutions),
                          dropout=m.dropout, num_classes=self.num_classes,
                          num_groups=m.num_groups)
        self.optimizer = make_optimizer(config.train)
        self.num_dims = math.prod(data.image_shape)
        self.num_levels = data.max_value + 1
        self.guidance_classifier = None
        if s.classifier_scale:
            self.guidance_classifier = self._load_classifier(s.classifier_workdir)

    def _load_classifier(self, workdir: str):
        from jaxgen import pretrained
        config, family, params = pretrained.load(workdir, "sample.classifier_workdir")
        if not getattr(family, "time_conditioned", False):
            raise ConfigError(f"sample.classifier_workdir: '{workdir}' holds a "
                              f"{config.family}, not a noisy_classifier")
        if (config.model.schedule, config.model.num_timesteps) != (
                self.config.model.schedule, self.num_timesteps):
            trained = f"{config.model.schedule} schedule with T={config.model.num_timesteps}"
            raise ConfigError(f"sample.classifier_workdir: the classifier was trained on the "
                              f"{trained}, this model uses {self.config.model.schedule} with "
                              f"T={self.num_timesteps}")
        return family, params

    @property
    def sampling_classes(self) -> int:
        """Classes samples can be asked for: by conditioning or by a guidance classifier."""
        return self.data.num_classes if (self.num_classes or self.guidance_classifier) else 0

    def classifier_gradient(self, x_t, index, labels):
        """grad_x log p(y | x_t, t) of the guidance classifier: [B, H, W, C]."""
        family, params = self.guidance_classifier

        def log_prob(x):
            logits = family.logits(params, x, index)
            return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        return jax.grad(log_prob)(x_t)

    # The forward process and the parameterisations.

    def q_sample(self, x0, index, noise):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: q(x_t | x_0) (Ho et al. 2020, eq. 4)."""
        abar = _gather(self.schedule.alpha_bar, index)
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise

    def target(self, x0, noise, index):
        """What the network regresses: eps, x0, or v = sqrt(abar) eps - sqrt(1 - abar) x0
        (Salimans & Ho 2022)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        abar = _gather(self.schedule.alpha_bar, index)
        return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * x0

    def to_eps_x0(self, output, x_t, index):
        """The network's output -> (eps, x0) at x_t: the inverse of `target`."""
        abar = _gather(self.schedule.alpha_bar, index)
        a, b = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
        if self.prediction == "eps":
            return output, (x_t - b * output) / a
        if self.prediction == "x0":
            return (x_t - a * output) / b, output
        return b * x_t + a * output, a * x_t - b * output

    def _labels(self, batch):
        return batch["label"] if self.num_classes else None

    # Where the process runs: pixels here; latent diffusion overrides these four.

    clip_x0 = True  # pixels live in [-1, 1]; predicted x0 is clipped there when sampling

    def space_shape(self, data: DataSpec) -> tuple[int, ...]:
        """Shape of one x0 of the process."""
        return tuple(data.image_shape)

    def to_space(self, images):
        """Images of a batch [B, H, W, C] -> x0 of the process."""
        return images

    def to_images(self, x0):
        """x0 of the process -> images [B, H, W, C] in value_range."""
        return jnp.clip(x0, -1.0, 1.0)

    def apply(self, params, x_t, index, labels=None, train=False, rng=None):
        return self.model.apply({"params": params}, x_t, index, labels, train=train,
                                rngs={"dropout": rng} if train else None)

    # The Family contract.

    def init(self, rng, batch) -> TrainState:
        x = self.to_space(batch["image"])
        index = jnp.zeros((x.shape[0],), jnp.int32)
        params = self.model.init(rng, x, index, self._labels(batch))["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), rng=jnp.zeros((2,), jnp.uint32))

    def per_example_loss(self, params, batch, rng, train: bool):
        """The simple loss (Ho et al. 2020, eq. 14): mean squared error of the prediction at
        a uniform timestep, per example [B]."""
        x0 = self.to_space(batch["image"])
        chex.assert_rank(x0, 4)
        t_rng, noise_rng, drop_rng, label_rng = jax.random.split(rng, 4)
        index = jax.random.randint(t_rng, (x0.shape[0],), 0, self.num_timesteps)
        noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
        labels = self._labels(batch)
        if labels is not None and train and self.label_dropout > 0:
            # Classifier-free guidance (Ho & Salimans 2022): the null label num_classes
            # replaces the label with probability p, so one network learns both models.
            drop = jax.random.bernoulli(label_rng, self.label_dropout, labels.shape)
            labels = jnp.where(drop, self.num_classes, labels)
        output = self.apply(params, self.q_sample(x0, index, noise), index, labels, train,
                            drop_rng)
        error = jnp.square(output - self.target(x0, noise, index))
        return jnp.mean(error.reshape(error.shape[0], -1), axis=-1)

    def train_step(self, state: TrainState, batch, rng):
        def loss_fn(params):
            return jnp.mean(self.per_example_loss(params, batch, rng, train=True))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return (apply_gradients(state, grads, self.optimizer),
                {"loss": loss, "grad_norm": optax.global_norm(grads)})

    def eval_step(self, state: TrainState, batch, rng):
        return {"loss": self.per_example_loss(state.params_for_sampling(), batch, rng, False)}

    def evaluate_step(self, state: TrainState, batch, rng):
        """eval_step plus the variational bound in nats and bits/dim."""
        params = state.params_for_sampling()
        loss_rng, vlb_rng = jax.random.split(rng)
        nats = self.variational_bound(params, batch["image"], self._labels(batch), vlb_rng)
        return {"loss": self.per_example_loss(params, batch, loss_rng, False), "vlb": nats,
                "vlb_bits_per_dim": nats / (self.num_dims * math.log(2.0))}

    # The variational bound (Ho et al. 2020, eq. 5), with p's variance beta~_t
    # ("fixed small"; at t = 1 that of t = 2, as beta~_1 = 0).

    def _model_log_variance(self, index):
        variance = self.schedule.posterior_variance
        return jnp.log(jnp.concatenate([variance[1:2], variance[1:]]))[index]

    def _posterior_mean(self, x0, x_t, index):
        """Mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 7)."""
        s = self.schedule
        beta, abar = _gather(s.betas, index), _gather(s.alpha_bar, index)
        abar_prev, alpha = _gather(s.alpha_bar_prev, index), _gather(s.alphas, index)
        return (beta * jnp.sqrt(abar_prev) / (1.0 - abar)) * x0 + (
            (1.0 - abar_prev) * jnp.sqrt(alpha) / (1.0 - abar)) * x_t

    def bound_term(self, params, x0, labels, index, noise):
        """L_{t-1} for the timesteps `index` [B] (L_0, the discrete decoder, at index 0): [B]."""
        x_t = self.q_sample(x0, index, noise)
        _, x0_hat = self.to_eps_x0(self.apply(params, x_t, index, labels), x_t, index)
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0) if self.clip_x0 else x0_hat
        model_mean = self._posterior_mean(x0_hat, x_t, index)
        model_log_var = _gather(self._model_log_variance(jnp.arange(self.num_timesteps)), index)
        true_log_var = jnp.log(jnp.maximum(_gather(self.schedule.posterior_variance, index),
                                           1e-20))
        kl = normal_kl(self._posterior_mean(x0, x_t, index), true_log_var, model_mean,
                       model_log_var)
        decoder_nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var,
                                                           self.num_levels)
        term = jnp.where(index.reshape(-1, 1, 1, 1) == 0, decoder_nll, kl)
        return jnp.sum(term.reshape(term.shape[0], -1), axis=-1)

    def prior_term(self, x0):
        """L_T = KL(q(x_T | x_0) || N(0, I)): [B]."""
        abar = self.schedule.alpha_bar[-1]
        kl = normal_kl(jnp.sqrt(abar) * x0, jnp.log(1.0 - abar), 0.0, 0.0)
        return jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1)

    def variational_bound(self, params, x0, labels, rng):
        """-log p(x0) <= L_T + sum_t L_{t-1}, nats [B]. With eval.vlb_timesteps = K > 0, the
        sum is estimated without bias from K stratified timesteps (one per block of T/K)."""
        T = self.num_timesteps
        K = self.config.eval.vlb_timesteps or T
        offset_rng, noise_rng = jax.random.split(rng)
        offset = jax.random.randint(offset_rng, (x0.shape[0],), 0, T // K) if K < T else (
            jnp.zeros((x0.shape[0],), jnp.int32))

        def step(total, k):
            index = offset + k * (T // K)
            noise = jax.random.normal(jax.random.fold_in(noise_rng, k), x0.shape, x0.dtype)
            return total + self.bound_term(params, x0, labels, index, noise), None

        total, _ = jax.lax.scan(step, jnp.zeros((x0.shape[0],)), jnp.arange(K))
        return self.prior_term(x0) + total * (T / K)

    # Sampling.

    def guided_eps_x0(self, params, x_t, index, labels, guidance_scale: float):
        """(eps, x0) of the model; with classifier-free guidance w:
        eps = (1 + w) eps(x, y) - w eps(x, null) (Ho & Salimans 2022, eq. 6)."""
        if not guidance_scale:
            return self.to_eps_x0(self.apply(params, x_t, index, labels), x_t, index)
        null = jnp.full_like(labels, self.num_classes)
        both = self.apply(params, jnp.concatenate([x_t, x_t]), jnp.concatenate([index, index]),
                          jnp.concatenate([labels, null]))
        eps_both, _ = self.to_eps_x0(both, jnp.concatenate([x_t, x_t]),
                                     jnp.concatenate([index, index]))
        eps_cond, eps_null = jnp.split(eps_both, 2)
        eps = (1.0 + guidance_scale) * eps_cond - guidance_scale * eps_null
        abar = _gather(self.schedule.alpha_bar, index)
        return eps, (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)

    def timestep_pairs(self, sampler: str, steps: int) -> np.ndarray:
        """[(i, i_prev)] from i = T-1 down; i_prev = -1 at the end (abar = 1)."""
        if sampler == "ddpm":
            indices = np.arange(self.num_timesteps)[::-1]
        else:
            # Evenly spaced subsequence (Song et al. 2021, "linear" tau), always ending at 0.
            indices = np.unique(np.round(np.linspace(0, self.num_timesteps - 1, steps))
                                .astype(np.int32))[::-1]
        return np.stack([indices, np.append(indices[1:], -1)], axis=1).astype(np.int32)

    def denoise_step(self, params, x_t, pair, labels, noise, sampler: str, eta: float,
                     guidance_scale: float):
        """One reverse step x_t -> x_{t_prev}. DDPM: ancestral step with variance beta~_t
        (Ho et al. 2020, Algorithm 2). DDIM (Song et al. 2021, eq. 12):
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)."""
        index = jnp.full((x_t.shape[0],), pair[0])
        eps, x0 = self.guided_eps_x0(params, x_t, index, labels, guidance_scale)
        abar = self.schedule.alpha_bar[pair[0]]
        if self.guidance_classifier is not None:
            # Classifier guidance in its epsilon form (Dhariwal & Nichol 2021, Algorithm 2):
            # eps <- eps - sqrt(1 - abar) * s * grad log p(y | x_t).
            eps = eps - jnp.sqrt(1.0 - abar) * self.config.sample.classifier_scale * (
                self.classifier_gradient(x_t, index, labels))
            x0 = (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
        if self.clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
        abar_prev = jnp.where(pair[1] >= 0, self.schedule.alpha_bar[jnp.maximum(pair[1], 0)], 1.0)
        # eps consistent with the clipped x0, so that clipping never adds energy.
        eps = (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
        if sampler == "ddpm":
            mean = self._posterior_mean(x0, x_t, index)
            variance = self.schedule.posterior_variance[pair[0]]
            return mean + jnp.sqrt(variance) * noise
        sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
        return jnp.sqrt(abar_prev) * x0 + direction + sigma * noise

    def trajectory(self, state: TrainState, rng, num: int, labels=None, keep: int = 0,
                   sampler: str | None = None, steps: int | None = None,
                   eta: float | None = None, guidance_scale: float | None = None,
                   x_T=None):
        """Runs the reverse process in one lax.scan: (x_0 [num, H, W, C] in [-1, 1],
        `keep` snapshots [keep, num, H, W, C] along the way, x_T first)."""
        s = self.config.sample
        sampler = sampler or s.sampler
        steps = s.steps if steps is None else steps
        eta = s.eta if eta is None else eta
        guidance_scale = s.guidance_scale if guidance_scale is None else guidance_scale
        if labels is None and (self.num_classes or self.guidance_classifier is not None):
            labels = jnp.arange(num) % self.data.num_classes
        params = state.params_for_sampling()
        start_rng, loop_rng = jax.random.split(rng)
        shape = (num,) + self.space_shape(self.data)
        x = jax.random.normal(start_rng, shape) if x_T is None else x_T
        pairs = jnp.asarray(self.timestep_pairs(sampler, steps))
        total = pairs.shape[0]
        snapshot_at = set(np.linspace(0, total - 1, keep).round().astype(int).tolist()) if keep \
            else set()
        snapshot_mask = jnp.asarray([k in snapshot_at for k in range(total)])

        report_every = max(total // 10, 1)

        def body(x, inputs):
            k, pair, take = inputs
            if total >= 100:  # long runs: a log line every 10% of the steps
                jax.lax.cond(k % report_every == 0,
                             lambda: jax.debug.callback(_report_progress, k, total),
                             lambda: None)
            noise = jax.random.normal(jax.random.fold_in(loop_rng, k), shape)
            noise = jnp.where(pair[1] >= 0, noise, 0.0)  # no noise on the last step
            x_next = self.denoise_step(params, x, pair, labels, noise, sampler, eta,
                                       guidance_scale)
            return x_next, (jnp.where(take, x, 0.0) if keep else None)

        x, snapshots = jax.lax.scan(body, x, (jnp.arange(total), pairs, snapshot_mask))
        if keep:
            snapshots = snapshots[np.array(sorted(snapshot_at))]
        return x, snapshots

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images [num, H, W, C] in value_range by the configured sampler (EMA params)."""
        x, _ = self.trajectory(state, rng, num, labels)
        return self.to_images(x)

    def forward_strip(self, x0, rng, num_points: int = 8):
        """x0 [H, W, C] noised at evenly spaced t -> [num_points, H, W, C]."""
        index = jnp.linspace(0, self.num_timesteps - 1, num_points).round().astype(jnp.int32)
        noise = jax.random.normal(rng, (num_points,) + x0.shape)
        return self.q_sample(jnp.broadcast_to(x0, noise.shape), index, noise)
