"""StyleGAN2 (Karras et al. 2020) on the GAN family's alternating step.

What it adds to the GAN family (`gan.py`), whose losses, optimisers, lazy R1 and
discriminator phase it uses:
- networks: the style-based generator and the residual discriminator (`models/stylegan.py`);
- style-mixing regularisation: with probability `model.style_mixing` a batch's styles switch
  from w1 = f(z1) to w2 = f(z2) at a crossover layer drawn uniformly (Karras et al. 2019,
  sec. 3.1), in the generator's and the discriminator's fakes;
- path-length regularisation (`model.pl_weight` > 0; Karras et al. 2020, sec. 3.2, eq. 4),
  lazily every `model.pl_interval` steps, with the running target a in model_state;
- the running mean of w (model_state["w_avg"]), the centre of the truncation trick
  w' = w_avg + psi (w - w_avg) (`sample.truncation_psi`; Karras et al. 2019, appendix B).

The EMA covers the generator only (`ema_keys`), as in the paper; samples come from it.
Sampling noise: `sample` draws fresh noise with its key; `from_latents` and the pictures use
one fixed noise draw (the official code's noise_mode="const"), so a picture varies only in
what it is about.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib, rng as rng_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import NON_NEGATIVE, POSITIVE, POSITIVE_ENTRIES, Check, Key
from jaxgen.core.contract import new_state
from jaxgen.data.sources import DataSpec
from jaxgen.families import gan
from jaxgen.losses import gan as gan_losses
from jaxgen.models.stylegan import (UPSAMPLING, StyleDiscriminator, StyleGenerator,
                                    num_style_inputs)
from jaxgen.core.state import TrainState

PROBABILITY = Check(lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")
FIXED_NOISE_SEED = 0  # the noise of from_latents and the pictures

# The DCGAN networks' keys do not apply; the rest of the GAN family's do.
_DCGAN_ONLY = ("model.generator_features", "model.discriminator_features", "model.spectral_norm")

KEYS = {
    # StyleGAN2's recipe: lazy R1 (gamma 1, every 16 steps), rates 2e-3, Adam(0, 0.99).
    **config_lib.with_defaults(
        {name: key for name, key in gan.KEYS.items() if name not in _DCGAN_ONLY},
        **{"model.r1_gamma": 1.0, "model.r1_interval": 16, "train.learning_rate": 2e-3,
           "train.discriminator_learning_rate": 2e-3, "train.adam_b1": 0.0,
           "train.adam_b2": 0.99}),
    "model.latent_dim": Key(512, "size of z", check=POSITIVE),
    "model.w_dim": Key(512, "size of w, the mapping network's output and width",
                       check=POSITIVE),
    "model.mapping_depth": Key(8, "layers of the mapping network", check=POSITIVE),
    "model.mapping_lr_multiplier": Key(0.01, "the mapping network's learning-rate multiplier",
                                       check=POSITIVE),
    "model.generator_widths": Key((256, 256, 128, 64), "synthesis widths per resolution from "
                                  "4x4 up: n widths make 4*2^(n-1) px square images",
                                  check=POSITIVE_ENTRIES),
    "model.discriminator_widths": Key((64, 128, 256, 256), "discriminator widths per "
                                      "resolution from the image's down to 4x4",
                                      check=POSITIVE_ENTRIES),
    "model.upsampling": Key("bilinear", "resize before the generator's 3x3 convolutions",
                            choices=UPSAMPLING),
    "model.mbstd_group": Key(4, "examples per minibatch-standard-deviation group",
                             check=POSITIVE),
    "model.style_mixing": Key(0.9, "probability of a batch mixing two w at a random layer",
                              check=PROBABILITY),
    "model.pl_weight": Key(0.0, "path-length regularisation weight (the paper: 2; 0: off)",
                           check=NON_NEGATIVE),
    "model.pl_interval": Key(4, "lazy path-length regularisation: one step in pl_interval",
                             check=POSITIVE),
    "model.pl_decay": Key(0.01, "the running target a of the path lengths moves by this "
                                "fraction per regularised step", check=PROBABILITY),
    "model.pl_batch_fraction": Key(0.5, "share of the batch the path-length term uses",
                                   check=Check(lambda v: 0.0 < v <= 1.0, "must be in (0, 1]")),
    "model.w_avg_decay": Key(0.995, "the running mean of w: w_avg <- mean(w) + decay "
                                    "(w_avg - mean(w)) per step", check=PROBABILITY),
    "sample.truncation_psi": Key(1.0, "truncation trick: w_avg + psi (w - w_avg); 1: off",
                                 check=NON_NEGATIVE),
    "eval.ppl_samples": Key(2000, "perceptual path length: pairs per space (Z, W) in "
                                  "jaxgen.evaluate (0: off)", check=NON_NEGATIVE),
}


def default_config() -> ml_collections.ConfigDict:
    """StyleGAN2's keys with their defaults."""
    return config_lib.from_keys("stylegan", KEYS)


class StyleGANFamily(gan.GANFamily):
    """Keys: `KEYS` (python -m jaxgen.keys stylegan). Images in [-1, 1]; square, 4 * 2^k px
    (data.pad_to pads Fashion-MNIST to 32)."""

    keys = KEYS

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        m = config.model
        height, width, channels = data.image_shape
        for name, widths in (("generator_widths", m.generator_widths),
                             ("discriminator_widths", m.discriminator_widths)):
            side = 4 * 2 ** (len(widths) - 1)
            if (height, width) != (side, side):
                raise ConfigError(f"model.{name} has {len(widths)} resolutions, for {side}x{side} "
                                  f"images, but the data's are {height}x{width} "
                                  f"(data.pad_to pads them to a square)")
        super().__init__(config, data)
        self.w_dim = m.w_dim
        self.num_ws = num_style_inputs(len(m.generator_widths))
        self.model = m
        self.truncation_psi = config.sample.truncation_psi

    def networks(self, model: ml_collections.ConfigDict, data: DataSpec):
        return (StyleGenerator(data.image_shape, tuple(model.generator_widths), model.w_dim,
                               model.mapping_depth, self.num_classes,
                               model.mapping_lr_multiplier, model.upsampling),
                StyleDiscriminator(tuple(model.discriminator_widths), self.num_classes,
                                   model.mbstd_group))

    # The networks, by part.

    def mapped(self, generator_params, z, labels=None) -> jax.Array:
        """z [B, latent_dim] -> w [B, w_dim]."""
        return self.run(self.generator, {"params": generator_params}, z, labels, method="map")

    def synthesized(self, generator_params, ws, noise_rng=None) -> jax.Array:
        """ws [B, num_ws, w_dim] -> images [B, H, W, C]; noise_rng None: the fixed noise."""
        if noise_rng is None:
            noise_rng = rng_lib.key(FIXED_NOISE_SEED)
        return self.run(self.generator, {"params": generator_params}, ws, noise_rng,
                        method="synthesize")

    def broadcast(self, w: jax.Array) -> jax.Array:
        """One w for every layer: [B, w_dim] -> [B, num_ws, w_dim]."""
        return jnp.repeat(w[:, None], self.num_ws, axis=1)

    def mixed_styles(self, generator_params, rng, num: int, labels=None):
        """Training styles: (ws [num, num_ws, w_dim], w [num, w_dim]). With probability
        style_mixing the layers from a crossover drawn uniformly in 1..num_ws-1 take w2 of a
        second z (one crossover per batch, as in the official code)."""
        z_rng, second_rng, mix_rng, cut_rng = jax.random.split(rng, 4)
        w = self.mapped(generator_params, self.latents(z_rng, num), labels)
        ws = self.broadcast(w)
        if self.model.style_mixing == 0 or self.num_ws < 2:
            return ws, w
        w2 = self.mapped(generator_params, self.latents(second_rng, num), labels)
        crossover = jnp.where(jax.random.uniform(mix_rng) < self.model.style_mixing,
                              jax.random.randint(cut_rng, (), 1, self.num_ws), self.num_ws)
        return mix(ws, self.broadcast(w2), crossover), w

    def generate(self, generator_params, z, labels=None, noise_rng=None) -> jax.Array:
        """z [B, latent_dim] -> images [B, H, W, C], one w for every layer, no truncation."""
        return self.synthesized(generator_params,
                                self.broadcast(self.mapped(generator_params, z, labels)),
                                noise_rng)

    def logits(self, discriminator_params, model_state, x, labels=None,
               update_stats: bool = False):
        """x [B, H, W, C] -> (logits [B], model_state unchanged)."""
        return self.run(self.discriminator, {"params": discriminator_params}, x, labels), \
            model_state

    def draw_fakes(self, generator_params, model_state, rng, num: int, labels=None):
        """The discriminator's fakes: mixed styles and fresh noise, as the generator trains."""
        styles_rng, noise_rng = jax.random.split(rng)
        ws, _ = self.mixed_styles(generator_params, styles_rng, num, labels)
        return self.synthesized(generator_params, ws, noise_rng)

    # Regularisation.

    def path_length_penalty(self, generator_params, ws, noise_rng, rng, target):
        """(penalty, new target) of eq. 4: lengths ||J_w^T y||, y ~ N(0, I) / sqrt(H W) over
        ws [B, num_ws, w_dim] (the length summed over w_dim, averaged over layers, as in the
        official code); the penalty E (length - a)^2 with a's update a + decay (E length - a)
        (no gradient through a)."""
        def projected(styles):
            images = self.synthesized(generator_params, styles, noise_rng)
            y = jax.random.normal(rng, images.shape) / jnp.sqrt(images.shape[1] * images.shape[2])
            return jnp.sum(images * y)
        gradients = jax.grad(projected)(ws)
        lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(gradients), axis=2), axis=1))
        new_target = target + self.model.pl_decay * (jax.lax.stop_gradient(jnp.mean(lengths))
                                                     - target)
        return jnp.mean(jnp.square(lengths - new_target)), new_target

    def regularisation_intervals(self) -> dict[str, int]:
        intervals = super().regularisation_intervals()
        if self.model.pl_weight > 0:
            intervals["path_length"] = self.model.pl_interval
        return intervals

    def generator_objective(self, generator_params, discriminator_params, model_state, rng,
                            labels, num: int, pl_weight: float = 0.0):
        """The generator's loss through the frozen discriminator, plus pl_weight times the
        path-length penalty -> (loss, aux: D(G(z)) mean, the batch's mean w, the path-length
        target)."""
        styles_rng, noise_rng, pl_rng = jax.random.split(rng, 3)
        ws, w = self.mixed_styles(generator_params, styles_rng, num, labels)
        fake = self.synthesized(generator_params, ws, noise_rng)
        logits, _ = self.logits(discriminator_params, model_state, fake, labels)
        loss = gan_losses.generator_loss(logits, self.loss)
        aux = {"d_fake_generator_phase": jnp.mean(jax.nn.sigmoid(logits)),
               "w_mean": jnp.mean(w, axis=0), "pl_target": model_state["pl_mean"]}
        if self.model.pl_weight > 0:  # the metric on every step: zero when not due
            penalty = jnp.zeros(())
            if pl_weight:
                part = ws[:max(1, int(num * self.model.pl_batch_fraction))]
                penalty, aux["pl_target"] = self.path_length_penalty(
                    generator_params, part, noise_rng, pl_rng, model_state["pl_mean"])
                loss = loss + pl_weight * penalty
            aux["pl_penalty"] = penalty
        return loss, aux

    # The contract.

    def init(self, rng, batch) -> TrainState:
        g_rng, d_rng, z_rng = jax.random.split(rng, 3)
        labels = self.labels(batch)
        z = self.latents(z_rng, batch["image"].shape[0])
        params = {"generator": self.generator.init(g_rng, z, labels)["params"],
                  "discriminator": self.discriminator.init(d_rng, batch["image"],
                                                           labels)["params"]}
        model_state = {"w_avg": jnp.zeros((self.w_dim,), jnp.float32),
                       "pl_mean": jnp.zeros((), jnp.float32)}
        return new_state(params, self.optimizers, model_state)

    def generator_phase(self, state: TrainState, batch, rng, due=None):
        """One update of G (adversarial loss, path length when due; None: due); then the
        running mean of w and the path-length target move."""
        labels = self.labels(batch)
        m = self.model
        pl_weight = m.pl_weight * m.pl_interval if "path_length" in self.all_due(due) else 0.0
        params = state.params
        (g_loss, aux), grads = jax.value_and_grad(self.generator_objective, has_aux=True)(
            params["generator"], params["discriminator"], state.model_state, rng, labels,
            batch["image"].shape[0], pl_weight)
        params, opt_state = self._update("generator", params, state.opt_state, grads)
        decay = self.model.w_avg_decay
        w_mean = aux.pop("w_mean")
        model_state = {"w_avg": w_mean + decay * (state.model_state["w_avg"] - w_mean),
                       "pl_mean": aux.pop("pl_target")}
        metrics = {"g_loss": g_loss, **aux, "g_grad_norm": optax.global_norm(grads)}
        return state.replace(params=params, opt_state=opt_state, model_state=model_state), metrics

    # Sampling (the EMA generator).

    def mapping(self, state: TrainState, z, labels=None) -> jax.Array:
        """z [B, latent_dim] -> w [B, w_dim] of the sampling generator, untruncated; a
        conditional model cycles through the classes unless labels [B] are given."""
        labels = self.cycled_labels(z.shape[0], labels)
        return self.mapped(state.params_for_sampling()["generator"], z, labels)

    def average_w(self, state: TrainState) -> jax.Array:
        """[w_dim]: the running mean of w, the centre of truncation."""
        return state.model_state["w_avg"]

    def truncated(self, state: TrainState, w: jax.Array, psi: float | None = None):
        """w_avg + psi (w - w_avg) (psi None: sample.truncation_psi)."""
        psi = self.truncation_psi if psi is None else psi
        w_avg = self.average_w(state)
        return w_avg + psi * (w - w_avg)

    def synthesis(self, state: TrainState, ws, noise_rng=None) -> jax.Array:
        """ws [B, num_ws, w_dim] -> images [B, H, W, C] in [-1, 1] of the sampling generator;
        noise_rng None: the fixed noise."""
        images = self.synthesized(state.params_for_sampling()["generator"], ws, noise_rng)
        return jnp.clip(images, -1.0, 1.0)

    def from_latents(self, state: TrainState, z, labels=None) -> jax.Array:
        """G(z) with sample.truncation_psi and the fixed noise: [B, H, W, C] in [-1, 1]."""
        return self.synthesis(state, self.broadcast(self.truncated(state, self.mapping(
            state, z, labels))))

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images [num, H, W, C] in [-1, 1]: fresh z and noise, sample.truncation_psi."""
        z_rng, noise_rng = jax.random.split(rng)
        w = self.truncated(state, self.mapping(state, self.latents(z_rng, num), labels))
        return self.synthesis(state, self.broadcast(w), noise_rng)


def mix(ws: jax.Array, other: jax.Array, crossover) -> jax.Array:
    """Layers < crossover from ws, the rest from other: [B, num_ws, w_dim] each."""
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < crossover, ws, other)
