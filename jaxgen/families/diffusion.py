"""Denoising diffusion (Ho et al. 2020) with the cosine schedule (Nichol & Dhariwal 2021),
epsilon / x0 / v prediction, DDPM and DDIM sampling, classifier-free and classifier guidance.

The family is the network and its settings; the process, the bound and the samplers are the
library's (`jaxgen.diffusion`). Images are in [-1, 1]; `latent_diffusion` runs the same family
on an autoencoder's codes through the four space hooks below.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import FRACTION, NON_NEGATIVE, POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import (Classifier, FamilyBase, FrozenInput, TrainedRun, bits_per_dim,
                                  new_state)
from jaxgen.data.ranges import clip_to_range
from jaxgen.data.sources import DataSpec
from jaxgen.diffusion import samplers, schedules, timesteps
from jaxgen.diffusion.process import PREDICTIONS, GaussianProcess
from jaxgen.models.unet import UNet
from jaxgen.core.state import TrainState, apply_gradients, make_optimizer

LOSSES = ("simple", "vlb")

KEYS = {
    "data.binarize": Key(False, "diffusion models grey levels, never binary draws"),
    "data.dequantize": Key(False, "the bound's decoder is discrete: pixels stay on their grid"),
    "train.ema_decay": Key(0.9999, "EMA of the denoiser, used for sampling and evaluation"),
    "train.learning_rate": Key(2e-4, "Adam's learning rate", check=POSITIVE),
    "train.grad_clip_norm": Key(1.0, "global-norm clipping (0: off)", check=NON_NEGATIVE),
    "model.channels": Key(128, "width of the UNet's first stage", check=POSITIVE),
    "model.channel_mults": Key((1, 2, 2, 2), "width multiplier per resolution",
                               check=POSITIVE_ENTRIES),
    "model.num_res_blocks": Key(2, "residual blocks per resolution", check=POSITIVE),
    "model.attention_resolutions": Key((16,), "side lengths with self-attention"),
    "model.dropout": Key(0.1, "dropout in the residual blocks", check=FRACTION),
    "model.num_groups": Key(32, "GroupNorm groups (divides model.channels)", check=POSITIVE),
    "model.norm_eps": Key(1e-6, "epsilon of every GroupNorm", check=POSITIVE),
    "model.attention_head_dim": Key(0, "width of each attention head (0: one head)",
                                    check=NON_NEGATIVE),
    "model.mid_attention": Key(True, "self-attention between the two middle blocks"),
    "model.downsample_padding": Key("same", "padding of the stride-2 convolutions: 'same' "
                                            "(0 before, 1 after on even sides) or 'symmetric'",
                                    choices=("same", "symmetric")),
    "model.flip_sin_to_cos": Key(False, "timestep sinusoids with the cosines first"),
    "model.freq_shift": Key(1.0, "timestep frequencies 10000^(-k / (channels/2 - shift))"),
    "model.null_label": Key(True, "a conditional model's label table has the null label of "
                                  "classifier-free guidance (num_classes + 1 rows)"),
    "model.schedule": Key("cosine", "noise schedule", choices=schedules.SCHEDULES),
    "model.beta_start": Key(1e-4, "beta_1 of the linear and scaled_linear schedules at "
                                  "T = 1000 (scaled by 1000/T)", check=POSITIVE),
    "model.beta_end": Key(0.02, "beta_T of the linear and scaled_linear schedules at T = 1000 "
                                "(scaled by 1000/T)", check=POSITIVE),
    "model.fixed_variance": Key("small", "reverse variance without model.learn_variance: "
                                         "beta~_t ('small') or beta_t ('large')",
                                choices=("small", "large")),
    "model.num_timesteps": Key(1000, "T, the number of diffusion steps", check=POSITIVE),
    "model.prediction": Key("eps", "what the network predicts", choices=PREDICTIONS),
    "model.learn_variance": Key(False, "learn the reverse variances with the hybrid loss "
                                       "L_simple + vlb_weight L_vlb (Nichol & Dhariwal 2021)"),
    "model.vlb_weight": Key(0.001, "lambda of the hybrid loss (model.learn_variance)",
                            check=NON_NEGATIVE),
    "model.loss": Key("simple", "training objective: 'simple' (Ho et al. 2020 eq. 14; the hybrid "
                                "with model.learn_variance) or 'vlb', the bound itself "
                                "(Nichol & Dhariwal 2021 L_vlb)", choices=LOSSES),
    "model.timestep_sampling": Key("uniform", "'importance': t drawn with p_t ~ sqrt(E[L_t^2]) "
                                              "over each t's last 10 losses, losses weighted "
                                              "1/(T p_t) (Nichol & Dhariwal 2021 eq. 18)",
                                   choices=timesteps.SAMPLINGS),
    "model.conditional": Key(False, "condition on the class label"),
    "model.label_dropout": Key(0.0, "> 0: classifier-free guidance training (null label)",
                               check=FRACTION),
    "sample.sampler": Key("ddim", "reverse process", choices=tuple(samplers.SAMPLERS)),
    "sample.steps": Key(50, "DDIM steps (DDPM takes all T)", check=POSITIVE),
    "sample.eta": Key(0.0, "DDIM noise: 0 deterministic, 1 DDPM's variance", check=NON_NEGATIVE),
    "sample.timestep_spacing": Key("linspace", "the timesteps DDIM visits (diffusers' names)",
                                   choices=samplers.SPACINGS),
    "sample.clip_x0": Key(True, "clip the predicted x0 to [-1, 1] when sampling pixels"),
    "sample.guidance_scale": Key(0.0, "classifier-free guidance w", check=NON_NEGATIVE),
    "sample.classifier_workdir": Key("", "a trained noisy_classifier run: classifier guidance"),
    "sample.classifier_scale": Key(0.0, "classifier guidance scale s", check=NON_NEGATIVE),
    "eval.vlb_timesteps": Key(0, "0: the bound's full sum over T; K: stratified estimate "
                                 "from K steps", check=NON_NEGATIVE),
}


def default_config() -> ml_collections.ConfigDict:
    return config_lib.from_keys("diffusion", KEYS)


class DiffusionFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys diffusion)."""

    keys = KEYS
    value_range = "symmetric"
    clip_x0 = True  # pixels live in [-1, 1]; predicted x0 is clipped there when sampling

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec,
                 frozen: Mapping[str, Any] | None = None):
        config_lib.check_keys(config, self.keys)
        type(self).frozen_inputs_needed(config)  # a subclass's refusals come first
        m, s = config.model, config.sample
        if not 1 <= s.steps <= m.num_timesteps:
            raise ConfigError(f"sample.steps must be in 1..{m.num_timesteps}, got {s.steps}")
        if s.guidance_scale and not self.trained_for_guidance(config):
            raise ConfigError(f"sample.guidance_scale needs a model trained for it: "
                              f"{self.guidance_training}")
        if m.label_dropout > 0 and not m.null_label:
            raise ConfigError("model.label_dropout > 0 needs model.null_label=True (a row for "
                              "the null label)")
        head_dim = m.attention_head_dim
        if head_dim and any(m.channels * k % head_dim for k in m.channel_mults):
            raise ConfigError(f"model.attention_head_dim={head_dim} does not divide every "
                              f"level's width (model.channels x model.channel_mults)")
        vlb = config.eval.vlb_timesteps
        if vlb and m.num_timesteps % vlb:
            raise ConfigError(f"eval.vlb_timesteps={vlb} must be 0 or divide "
                              f"model.num_timesteps={m.num_timesteps}")
        if m.channels % m.num_groups:
            raise ConfigError(f"model.channels={m.channels} is not divisible by "
                              f"model.num_groups={m.num_groups}")
        self.config = config
        self.data = data
        self.process = GaussianProcess(
            schedules.make_schedule(m.schedule, m.num_timesteps, m.beta_start, m.beta_end),
            m.prediction, m.learn_variance, m.fixed_variance)
        self.vlb_weight = m.vlb_weight
        self.loss = m.loss
        self.importance_sampling = m.timestep_sampling == "importance"
        self.schedule = self.process.schedule
        self.num_timesteps = m.num_timesteps
        self.num_classes = data.num_classes if m.conditional else 0
        self.label_dropout = m.label_dropout
        channels = self.space_shape(data)[-1] * (2 if m.learn_variance else 1)
        unet = UNet(out_channels=channels, channels=m.channels,
                    channel_mults=tuple(m.channel_mults), num_res_blocks=m.num_res_blocks,
                    attention_resolutions=tuple(m.attention_resolutions),
                    dropout=m.dropout, num_classes=self.num_classes,
                    num_groups=m.num_groups, norm_eps=m.norm_eps,
                    downsample_padding=m.downsample_padding,
                    flip_sin_to_cos=m.flip_sin_to_cos, freq_shift=m.freq_shift,
                    head_dim=m.attention_head_dim, mid_attention=m.mid_attention,
                    null_label=m.null_label)
        self.model = self.network(unet)
        self.optimizer = make_optimizer(config.train)
        self.num_dims = math.prod(data.image_shape)
        self.num_levels = data.max_value + 1
        self.guidance_classifier = None
        if s.classifier_scale:
            self.guidance_classifier = self._guidance_classifier(
                frozen["sample.classifier_workdir"], s.classifier_workdir)

    @classmethod
    def frozen_inputs_needed(cls, config) -> dict[str, FrozenInput]:
        """Classifier guidance's noisy classifier (`contract.BuildsOnFrozenInputs`)."""
        s = config.sample
        if not s.classifier_scale:
            return {}
        return {"sample.classifier_workdir": FrozenInput("run", s.classifier_workdir)}

    def _guidance_classifier(self, run: TrainedRun, workdir: str):
        if not (isinstance(run.family, Classifier) and run.family.time_conditioned):
            raise ConfigError(f"sample.classifier_workdir: '{workdir}' holds a "
                              f"{run.config.family}, not a noisy_classifier")
        mine = (self.config.model.schedule, self.num_timesteps)
        theirs = (run.config.model.schedule, run.config.model.num_timesteps)
        if theirs != mine:
            raise ConfigError(f"sample.classifier_workdir: the classifier was trained on the "
                              f"{theirs[0]} schedule with T={theirs[1]}, this model uses "
                              f"{mine[0]} with T={mine[1]}")
        return run.family, run.state.params_for_sampling()

    @property
    def sampling_classes(self) -> int:
        """Classes samples can be asked for: by conditioning or by a guidance classifier."""
        return self.data.num_classes if (self.num_classes or self.guidance_classifier) else 0

    # What conditions the denoiser: class labels here; text conditioning overrides these
    # (`text_to_image.py`), with `labels` and `cycled_labels` of the contract's base.

    guidance_training = "model.conditional=True and model.label_dropout > 0"

    def trained_for_guidance(self, config) -> bool:
        """Whether the network learnt the unconditional model beside the conditional one."""
        return config.model.conditional and config.model.label_dropout > 0

    def network(self, unet: UNet):
        """The module apply runs as (x_t, index, condition, train=...)."""
        return unet

    def network_condition(self, labels):
        """What the network reads of a condition (text conditioning adds a frozen encoder's
        output)."""
        return labels

    def drop_condition(self, labels, rng):
        """Classifier-free guidance training (Ho & Salimans 2022): the null label num_classes
        replaces the label with probability p, so one network learns both models."""
        if self.label_dropout <= 0:
            return labels
        drop = jax.random.bernoulli(rng, self.label_dropout, labels.shape)
        return jnp.where(drop, self.num_classes, labels)

    def null_condition(self, labels):
        """The unconditional input of classifier-free guidance, shaped as labels."""
        return jnp.full_like(labels, self.num_classes)

    # Where the process runs: pixels here; latent diffusion overrides these three.

    def space_shape(self, data: DataSpec) -> tuple[int, ...]:
        """Shape of one x0 of the process."""
        return tuple(data.image_shape)

    def to_space(self, images):
        """Images of a batch [B, H, W, C] -> x0 of the process."""
        return images

    def to_images(self, x0):
        """x0 of the process -> images [B, H, W, C] in value_range."""
        return clip_to_range(x0, self.value_range)

    def apply(self, params, x_t, index, labels=None, train=False, rng=None):
        """The UNet's output at x_t [B, ...], index [B]."""
        return self.run(self.model, {"params": params}, x_t, index,
                        self.network_condition(labels), train=train,
                        rngs={"dropout": rng} if train else None)

    # The contract.

    def init(self, rng, batch) -> TrainState:
        x = self.to_space(batch["image"])
        index = jnp.zeros((x.shape[0],), jnp.int32)
        history = timesteps.init_history(self.num_timesteps) if self.importance_sampling else None
        condition = self.network_condition(self.labels(batch))
        return new_state(self.model.init(rng, x, index, condition)["params"],
                         self.optimizer, model_state=history)

    def per_example_loss(self, params, batch, rng, train: bool):
        """The training objective at uniform timesteps, per example [B]."""
        return self.weighted_loss(params, batch, rng, train)[0]

    def weighted_loss(self, params, batch, rng, train: bool, history=None):
        """(loss [B], weight [B], index [B]) at timesteps drawn uniformly or, given the loss
        history, by importance; mean(weight * loss) estimates the uniform-t objective.

        'simple': mean squared error of the prediction (Ho et al. 2020, eq. 14); with learned
        variances the hybrid L_simple + lambda L_vlb (Nichol & Dhariwal 2021, sec. 3.1), L_vlb
        being the bound's term at the same timestep in bits/dim times T (a one-term estimate
        of the sum) with the mean's output frozen, so that L_vlb trains the variance only.
        'vlb': that one-term estimate of the bound alone, training mean and variance."""
        x0 = self.to_space(batch["image"])
        chex.assert_rank(x0, 4)
        t_rng, noise_rng, drop_rng, label_rng = jax.random.split(rng, 4)
        index, weight = timesteps.draw(t_rng, x0.shape[0], history, self.num_timesteps)
        noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
        labels = self.labels(batch)
        if labels is not None and train:
            labels = self.drop_condition(labels, label_rng)
        x_t = self.process.q_sample(x0, index, noise)
        output = self.apply(params, x_t, index, labels, train, drop_rng)
        prediction, variance = self.process.split(output)
        if self.loss == "vlb":
            return self._vlb_estimate(output, x0, x_t, index), weight, index
        error = jnp.square(prediction - self.process.target(x0, noise, index))
        loss = jnp.mean(error.reshape(error.shape[0], -1), axis=-1)
        if variance is None:
            return loss, weight, index
        frozen = jnp.concatenate([jax.lax.stop_gradient(prediction), variance], axis=-1)
        return loss + self.vlb_weight * self._vlb_estimate(frozen, x0, x_t, index), weight, index

    def _vlb_estimate(self, output, x0, x_t, index):
        """T L_{t-1} in bits/dim [B]: a one-term estimate of the bound's sum over t. x0 is
        left unclipped, as improved-diffusion trains."""
        term = self.process.bound_term_of(output, x0, x_t, index, self.num_levels, clip_x0=False)
        return self.num_timesteps * term / (self.num_dims * math.log(2.0))

    def train_step(self, state: TrainState, batch, rng):
        history = state.model_state if self.importance_sampling else None

        def loss_fn(params):
            loss, weight, index = self.weighted_loss(params, batch, rng, True, history)
            return jnp.mean(weight * loss), (loss, index)

        (loss, (losses, index)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = apply_gradients(state, grads, self.optimizer)
        if history is not None:
            state = state.replace(model_state=timesteps.update(history, index, losses))
        return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    def eval_step(self, state: TrainState, batch, rng):
        return {"loss": self.per_example_loss(state.params_for_sampling(), batch, rng, False)}

    def likelihood_step(self, state: TrainState, batch, rng):
        """eval_step plus the variational bound in nats and bits/dim."""
        params = state.params_for_sampling()
        loss_rng, vlb_rng = jax.random.split(rng)
        nats = self.variational_bound(params, batch["image"], self.labels(batch), vlb_rng)
        return {"loss": self.per_example_loss(params, batch, loss_rng, False), "vlb": nats,
                "vlb_bits_per_dim": bits_per_dim(nats, self.num_dims)}

    def variational_bound(self, params, x0, labels, rng):
        """-log p(x0) in nats [B], from eval.vlb_timesteps terms (0: all T)."""
        return self.process.variational_bound(
            lambda x_t, index: self.apply(params, x_t, index, labels), x0, rng,
            self.num_levels, self.config.eval.vlb_timesteps, self.clip_x0)

    # Sampling.

    def eps_x0_fn(self, params, labels, guidance_scale: float) -> samplers.EpsX0:
        """The denoiser as (x_t, index) -> (eps, x0), with the configured guidance."""
        if guidance_scale:
            eps_x0 = samplers.classifier_free(
                self.process, lambda x, i, y: self.apply(params, x, i, y), labels,
                self.null_condition(labels), guidance_scale)
        else:
            eps_x0 = samplers.unguided(self.process,
                                       lambda x, i: self.apply(params, x, i, labels))
        if self.guidance_classifier is not None:
            classifier, classifier_params = self.guidance_classifier

            def log_prob_gradient(x_t, index):
                def log_prob(x):
                    logits = classifier.logits(classifier_params, x, index)
                    return jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits),
                                                       labels[:, None], 1))
                return jax.grad(log_prob)(x_t)

            eps_x0 = samplers.classifier_guided(self.process, eps_x0, log_prob_gradient,
                                                self.config.sample.classifier_scale)
        return eps_x0

    def trajectory(self, state: TrainState, rng, num: int, labels=None, keep: int = 0,
                   sampler: str | None = None, steps: int | None = None,
                   eta: float | None = None, guidance_scale: float | None = None,
                   x_T=None):
        """The reverse process in one lax.scan: (x_0 [num, ...] in the process's space, `keep`
        snapshots [keep, num, ...] along the way, x_T first). Settings default to
        config.sample."""
        s = self.config.sample
        labels = self.cycled_labels(num, labels)
        start_rng, loop_rng = jax.random.split(rng)
        shape = (num,) + self.space_shape(self.data)
        x = jax.random.normal(start_rng, shape) if x_T is None else x_T
        eps_x0 = self.eps_x0_fn(state.params_for_sampling(), labels,
                                s.guidance_scale if guidance_scale is None else guidance_scale)
        return samplers.run(self.process, eps_x0, sampler or s.sampler,
                            s.steps if steps is None else steps, s.eta if eta is None else eta,
                            x, loop_rng, keep, self.clip_x0 and s.clip_x0, s.timestep_spacing)

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images [num, H, W, C] in value_range by the configured sampler (EMA params)."""
        x, _ = self.trajectory(state, rng, num, labels)
        return self.to_images(x)

    def forward_strip(self, x0, rng, num_points: int = 8):
        """x0 [H, W, C] noised at evenly spaced t -> [num_points, H, W, C]."""
        return self.process.forward_strip(x0, rng, num_points)
