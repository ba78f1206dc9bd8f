"""Generative adversarial networks (Goodfellow et al. 2014), optionally class-conditional.

One train step is `discriminator_steps` discriminator updates followed by one generator
update against the updated, frozen discriminator. The two networks have their own optax
optimisers; the train state holds {"generator": ..., "discriminator": ...} under params
and opt_state, and the spectral-norm vectors (when enabled) under model_state.
Every discriminator update sees the step's whole real batch with fresh z.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.core import config_keys
from jaxgen.core.config_keys import NON_NEGATIVE, POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import FamilyBase, new_state
from jaxgen.data.sources import DataSpec
from jaxgen.losses import gan as gan_losses
from jaxgen.models.dcgan import SPECTRAL_STATS, Discriminator, Generator
from jaxgen.core.state import TrainState, make_optimizer, update_player

KEYS = {
    "model.latent_dim": Key(64, "size of z", check=POSITIVE),
    "model.generator_features": Key((128, 64), "generator widths, coarsest resolution first",
                                    check=POSITIVE_ENTRIES),
    "model.discriminator_features": Key((64, 128), "discriminator widths per stride-2 stage",
                                        check=POSITIVE_ENTRIES),
    "model.conditional": Key(False, "label embedding in G, projection discriminator"),
    "model.loss": Key("non_saturating", "the generator's loss",
                      choices=gan_losses.GENERATOR_LOSSES),
    "model.discriminator_steps": Key(1, "k discriminator updates per generator update",
                                     check=POSITIVE),
    **config_keys.R1_KEYS,
    "model.spectral_norm": Key(False, "spectral normalisation of every discriminator layer"),
    # Separate rates allow the two time-scale update rule (Heusel et al. 2017); a generator
    # rate of 0 freezes G while D learns (the vanishing-gradient experiment).
    # DCGAN's Adam settings (Radford et al. 2016) are the group's defaults.
    **config_keys.ADVERSARIAL_OPTIMIZER_KEYS,
    "train.ema_decay": Key(0.999, "EMA of the generator, which samples are drawn from"),
    "eval.num_examples": Key(2000, "test examples of the eval step (0: all)",
                             check=NON_NEGATIVE),
    "eval.ppl_samples": Key(0, "perceptual path length in Z (and W for StyleGAN): pairs per "
                               "space in jaxgen.evaluate (0: off)", check=NON_NEGATIVE),
    "eval.ppl_epsilon": Key(1e-4, "perceptual path length: the step along the path",
                            check=POSITIVE),
}


def default_config() -> ml_collections.ConfigDict:
    """The GAN's keys with their defaults."""
    return config_lib.from_keys("gan", KEYS)


def player_optimizers(train_config) -> dict[str, optax.GradientTransformation]:
    """{"generator": ..., "discriminator": ...}: each player's Adam at its learning rate."""
    return {"generator": make_optimizer(train_config),
            "discriminator": make_optimizer(train_config,
                                            train_config.discriminator_learning_rate)}


class GANFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys gan). Images in [-1, 1]."""

    keys = KEYS
    value_range = "symmetric"
    curve_metrics = ("d_loss", "g_loss")
    ema_keys = ("generator",)  # the discriminator is never sampled: no average of it

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        m = config.model
        self.config = config
        self.data = data
        self.loss = m.loss
        self.latent_dim = m.latent_dim
        self.discriminator_steps = m.discriminator_steps
        self.r1_gamma = m.r1_gamma
        self.r1_interval = m.r1_interval
        self.spectral_norm = m.get("spectral_norm", False)
        self.num_classes = data.num_classes if m.conditional else 0
        self.generator, self.discriminator = self.networks(m, data)
        self.optimizers = player_optimizers(config.train)

    def networks(self, model: ml_collections.ConfigDict, data: DataSpec):
        """(generator, discriminator) modules: DCGAN's; a GAN family with other networks
        (StyleGAN) overrides this and keeps the step, losses and regularisers."""
        return (Generator(data.image_shape, tuple(model.generator_features), self.num_classes),
                Discriminator(tuple(model.discriminator_features), self.num_classes,
                              self.spectral_norm))

    # Building blocks.

    def latents(self, rng, num: int) -> jax.Array:
        """z ~ N(0, I): [num, latent_dim]."""
        return jax.random.normal(rng, (num, self.latent_dim))

    def generate(self, generator_params, z, labels=None) -> jax.Array:
        """z [B, latent_dim] -> images [B, H, W, C] in [-1, 1]."""
        return self.run(self.generator, {"params": generator_params}, z, labels)

    def logits(self, discriminator_params, model_state, x, labels=None,
               update_stats: bool = False):
        """x [B, H, W, C] -> (logits [B], new model_state)."""
        variables = {"params": discriminator_params}
        if not self.spectral_norm:
            return self.run(self.discriminator, variables, x, labels), model_state
        variables[SPECTRAL_STATS] = model_state
        if not update_stats:
            return self.run(self.discriminator, variables, x, labels), model_state
        logits, updated = self.run(self.discriminator, variables, x, labels, update_stats=True,
                                   mutable=[SPECTRAL_STATS])
        return logits, updated[SPECTRAL_STATS]

    def r1_penalty(self, discriminator_params, model_state, real, labels=None) -> jax.Array:
        """E ||grad_x D(x)||^2 over real x (Mescheder et al. 2018, eq. 9; D as logits)."""
        def logit_sum(x):
            return jnp.sum(self.logits(discriminator_params, model_state, x, labels)[0])
        grad_x = jax.grad(logit_sum)(real)
        return jnp.mean(jnp.sum(jnp.square(grad_x), axis=(1, 2, 3)))

    # Lazy regularisation (contract.LazyRegulariser): a regulariser of interval k runs on the
    # steps divisible by k, weighted by k: the same expected weight for a k-th of the cost
    # (Karras et al. 2020, sec. 3.1).

    def regularisation_intervals(self) -> dict[str, int]:
        """{regulariser: interval} of the regularisers this run uses."""
        return {"r1": self.r1_interval} if self.r1_gamma > 0 else {}

    def regularisers_due(self, step: int) -> frozenset[str]:
        return frozenset(name for name, k in self.regularisation_intervals().items()
                         if step % k == 0)

    def r1_weight(self, due: frozenset[str]) -> float:
        """The R1 penalty's weight in an update whose due regularisers are `due`."""
        return 0.5 * self.r1_gamma * self.r1_interval if "r1" in due else 0.0

    def discriminator_objective(self, discriminator_params, model_state, real, fake,
                                labels=None, r1_weight: float = 0.0):
        """The discriminator's loss on real [B, ...] and fake [B, ...] images, plus r1_weight
        times the R1 penalty (fake is a constant here: no gradient reaches the generator)
        -> (loss, aux)."""
        both_labels = None if labels is None else jnp.concatenate([labels, labels])
        logits, model_state = self.logits(discriminator_params, model_state,
                                          jnp.concatenate([real, fake]), both_labels,
                                          update_stats=True)
        real_logits, fake_logits = jnp.split(logits, 2)
        kind = "hinge" if self.loss == "hinge" else "cross_entropy"
        adversarial = gan_losses.discriminator_loss(real_logits, fake_logits, kind)
        r1 = (self.r1_penalty(discriminator_params, model_state, real, labels)
              if r1_weight else jnp.zeros(()))
        loss = adversarial + r1_weight * r1
        return loss, {"model_state": model_state, "d_adversarial": adversarial, "r1": r1,
                      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}

    def generator_objective(self, generator_params, discriminator_params, model_state, z,
                            labels=None):
        """The generator's loss through the frozen discriminator -> (loss, D(G(z)) mean)."""
        fake = self.generate(generator_params, z, labels)
        logits, _ = self.logits(discriminator_params, model_state, fake, labels)
        return gan_losses.generator_loss(logits, self.loss), jnp.mean(jax.nn.sigmoid(logits))

    def draw_fakes(self, generator_params, model_state, rng, num: int, labels=None):
        """num samples of the current generator for a discriminator update."""
        return self.generate(generator_params, self.latents(rng, num), labels)

    def _update(self, name, params, opt_state, grads):
        return update_player(self.optimizers, name, params, opt_state, grads)

    # The contract.

    def init(self, rng, batch) -> TrainState:
        g_rng, d_rng, z_rng = jax.random.split(rng, 3)
        labels = self.labels(batch)
        z = self.latents(z_rng, batch["image"].shape[0])
        params = {"generator": self.generator.init(g_rng, z, labels)["params"]}
        variables = self.discriminator.init(d_rng, batch["image"], labels)
        params["discriminator"] = variables["params"]
        return new_state(params, self.optimizers, variables.get(SPECTRAL_STATS))

    def discriminator_phase(self, state: TrainState, batch, rng, due=None):
        """`discriminator_steps` updates of D against samples of the current G, with the
        regularisers in `due` (None: all of them); G untouched."""
        r1_weight = self.r1_weight(self.all_due(due))
        real, labels = batch["image"], self.labels(batch)
        chex.assert_rank(real, 4)
        params, opt_state, model_state = state.params, state.opt_state, state.model_state
        for k in range(self.discriminator_steps):
            fake = self.draw_fakes(params["generator"], model_state, jax.random.fold_in(rng, k),
                                   real.shape[0], labels)
            (d_loss, aux), grads = jax.value_and_grad(self.discriminator_objective, has_aux=True)(
                params["discriminator"], model_state, real, fake, labels, r1_weight)
            model_state = aux.pop("model_state")
            params, opt_state = self._update("discriminator", params, opt_state, grads)
        metrics = dict(aux, d_loss=d_loss, d_grad_norm=optax.global_norm(grads))
        return state.replace(params=params, opt_state=opt_state, model_state=model_state), metrics

    def generator_phase(self, state: TrainState, batch, rng, due=None):
        """One update of G through the frozen D; D and its spectral-norm vectors untouched."""
        labels = self.labels(batch)
        z = self.latents(rng, batch["image"].shape[0])
        params = state.params
        (g_loss, d_fake), grads = jax.value_and_grad(self.generator_objective, has_aux=True)(
            params["generator"], params["discriminator"], state.model_state, z, labels)
        params, opt_state = self._update("generator", params, state.opt_state, grads)
        metrics = {"g_loss": g_loss, "d_fake_generator_phase": d_fake,
                   "g_grad_norm": optax.global_norm(grads)}
        return state.replace(params=params, opt_state=opt_state), metrics

    def all_due(self, due: frozenset[str] | None) -> frozenset[str]:
        return frozenset(self.regularisation_intervals()) if due is None else due

    def train_step(self, state: TrainState, batch, rng, due: frozenset[str] | None = None):
        """One alternating update with the regularisers in `due` (the trainer gives the step's,
        `regularisers_due`; None: all of them)."""
        d_rng, g_rng = jax.random.split(rng)
        state, d_metrics = self.discriminator_phase(state, batch, d_rng, due)
        state, g_metrics = self.generator_phase(state, batch, g_rng, due)
        return state, {**d_metrics, **g_metrics}

    def eval_step(self, state: TrainState, batch, rng):
        """Per test example: D(x) and D(G(z)) of the current (not averaged) networks, [B]."""
        real, labels = batch["image"], self.labels(batch)
        fake = self.generate(state.params["generator"], self.latents(rng, real.shape[0]), labels)
        d = state.params["discriminator"]
        real_logits, _ = self.logits(d, state.model_state, real, labels)
        fake_logits, _ = self.logits(d, state.model_state, fake, labels)
        return {"d_real": jax.nn.sigmoid(real_logits), "d_fake": jax.nn.sigmoid(fake_logits)}

    def from_latents(self, state: TrainState, z, labels=None) -> jax.Array:
        """G(z) of the sampling (EMA) generator: z [B, latent_dim] -> [B, H, W, C]; a
        conditional model cycles through the classes unless labels [B] are given."""
        labels = self.cycled_labels(z.shape[0], labels)
        return self.generate(state.params_for_sampling()["generator"], z, labels)

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images [num, H, W, C] in [-1, 1] from the (EMA) generator."""
        return self.from_latents(state, self.latents(rng, num), labels)
