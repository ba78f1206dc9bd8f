"""CycleGAN: unpaired image-to-image translation (Zhu et al. 2017).

Two generators G_AB: A -> B and G_BA: B -> A and two discriminators D_A, D_B, trained on
unpaired batches of both domains ("image": A, "image_b": B) with (eq. 3 of the paper)

    L = L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + lambda L_cyc + lambda_id L_identity,
    L_cyc = E|G_BA(G_AB(a)) - a| + E|G_AB(G_BA(b)) - b|,
    L_identity = E|G_AB(b) - b| + E|G_BA(a) - a|   (sec. 5.2, weight 0.5 lambda),

least-squares adversarial losses (sec. 4), and discriminators fed from a history of 50
generated images (`image_pool`, part of the state). One step updates both generators through
the frozen discriminators, then both discriminators on the step's fakes (as the reference
code). The train state holds {"generators": {"ab", "ba"}, "discriminators": {"a", "b"}}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.families import image_pool
from jaxgen.core import config_keys
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import NON_NEGATIVE, POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import FamilyBase, new_state
from jaxgen.data.sources import DataSpec
from jaxgen.losses import gan as gan_losses
from jaxgen.models.cyclegan import PatchDiscriminator, ResnetGenerator
from jaxgen.core.state import TrainState, make_optimizer, update_player

ADVERSARIAL_LOSSES = ("least_squares", "non_saturating")
# Instance normalisation of a map of few pixels divides by the spread of a handful of values:
# measured on 8x8 digits with 2x2 maps, runs on 1 and 8 devices parted by 0.5% within 20
# steps (rounding amplified); with 4x4 maps they agree.
MIN_NORMALISED_SIZE = 4
DIRECTIONS = ("ab", "ba")

KEYS = {
    "data.source": Key("domains", "two unpaired domains (data.domain_a, data.domain_b)",
                       choices=("domains",)),
    # The default: a translation whose answer is known (cyclegan_fashion_invert.py): two
    # halves of Fashion-MNIST, the second inverted.
    **config_keys.source_keys("data.domain_a.", source="tfds", name="fashion_mnist",
                             part=(0, 2)),
    **config_keys.source_keys("data.domain_b.", source="tfds", name="fashion_mnist",
                             part=(1, 2), transform="invert"),
    "model.generator_width": Key(64, "width of the generators' first layer (c7s1-w)",
                                 check=POSITIVE),
    "model.generator_blocks": Key(9, "residual blocks (the paper: 9 at 256 px, 6 at 128 px)",
                                  check=POSITIVE),
    "model.downsamplings": Key(2, "stride-2 downsamplings (and as many upsamplings)",
                               check=NON_NEGATIVE),
    "model.discriminator_widths": Key((64, 128, 256, 512), "PatchGAN widths, the last at "
                                                          "stride 1 (these four: 70x70 patches)",
                                      check=POSITIVE_ENTRIES),
    "model.loss": Key("least_squares", "adversarial loss of both players",
                      choices=ADVERSARIAL_LOSSES),
    "model.cycle_weight": Key(10.0, "lambda of the cycle-consistency L1 loss",
                              check=NON_NEGATIVE),
    "model.identity_weight": Key(0.5, "the identity loss's weight, times cycle_weight "
                                      "(0: off)", check=NON_NEGATIVE),
    "model.pool_size": Key(50, "generated images kept per domain for the discriminators "
                               "(0: the newest only)", check=NON_NEGATIVE),
    **config_keys.ADVERSARIAL_OPTIMIZER_KEYS,  # the paper's Adam(0.5, 0.999) at 2e-4
    "train.lr_schedule": Key("linear", "after the warmup: constant, cosine or linear decay "
                                       "(the paper: constant for half, then linear to 0)",
                             choices=("constant", "cosine", "linear")),
    "eval.num_examples": Key(1000, "test examples of the eval step (0: all)",
                             check=NON_NEGATIVE),
}


def default_config() -> ml_collections.ConfigDict:
    """CycleGAN's keys with their defaults."""
    return config_lib.from_keys("cyclegan", KEYS)


def l1_per_example(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean absolute difference of each example: [B, ...] -> [B]."""
    return jnp.mean(jnp.abs(x - y), axis=tuple(range(1, x.ndim)))


class CycleGANFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys cyclegan). Images in [-1, 1]; data.source=domains."""

    keys = KEYS
    value_range = "symmetric"
    curve_metrics = ("g_loss", "d_loss", "cycle")
    ema_keys = ("generators",)  # the discriminators never translate

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        if not data.two_domains:
            raise ConfigError("family cyclegan needs two unpaired domains: data.source=domains "
                              "with data.domain_a and data.domain_b")
        m = config.model
        smallest = min(data.image_shape[:2]) // 2 ** m.downsamplings
        if smallest < MIN_NORMALISED_SIZE:
            raise ConfigError(
                f"model.downsamplings={m.downsamplings} leaves {smallest}x{smallest} feature "
                f"maps of the {data.image_shape[0]}x{data.image_shape[1]} images; instance "
                f"normalisation needs at least {MIN_NORMALISED_SIZE}x{MIN_NORMALISED_SIZE}: "
                f"lower model.downsamplings")
        self.config = config
        self.data = data
        self.loss = m.loss
        self.cycle_weight = m.cycle_weight
        self.identity_weight = m.identity_weight * m.cycle_weight
        self.pool_size = m.pool_size
        self.generator = ResnetGenerator(data.image_shape[-1], m.generator_width,
                                         m.generator_blocks, m.downsamplings)
        self.discriminator = PatchDiscriminator(tuple(m.discriminator_widths))
        self.optimizers = {
            "generators": make_optimizer(config.train),
            "discriminators": make_optimizer(config.train,
                                             config.train.discriminator_learning_rate)}

    # Building blocks.

    def generate(self, generator_params, images: jax.Array) -> jax.Array:
        """One generator: images [B, H, W, C] -> [B, H, W, C] in [-1, 1]."""
        return self.run(self.generator, {"params": generator_params}, images)

    def scores(self, discriminator_params, images: jax.Array) -> jax.Array:
        """One discriminator: images [B, H, W, C] -> patch scores [B, h, w]."""
        return self.run(self.discriminator, {"params": discriminator_params}, images)

    def generator_adversarial(self, fake_scores: jax.Array) -> jax.Array:
        if self.loss == "least_squares":
            return gan_losses.least_squares_generator_loss(fake_scores)
        return gan_losses.generator_loss(fake_scores, "non_saturating")

    def discriminator_adversarial(self, real_scores, fake_scores) -> jax.Array:
        """Halved, as the reference code, so D learns at half the generators' pace."""
        if self.loss == "least_squares":
            return gan_losses.least_squares_discriminator_loss(real_scores, fake_scores)
        return 0.5 * gan_losses.discriminator_loss(real_scores, fake_scores)

    def cycle(self, generators, a: jax.Array, b: jax.Array) -> dict[str, jax.Array]:
        """Both directions and their cycles: fake_b = G_AB(a), rec_a = G_BA(fake_b), and
        likewise from b; with the identity loss also same_b = G_AB(b), same_a = G_BA(a)."""
        identity = self.identity_weight > 0
        # One call per generator and pass: instance normalisation is per image, so stacking
        # a batch with the identity inputs changes nothing but the cost.
        out_ab = self.generate(generators["ab"], jnp.concatenate([a, b]) if identity else a)
        out_ba = self.generate(generators["ba"], jnp.concatenate([b, a]) if identity else b)
        n = a.shape[0]
        fake_b, fake_a = out_ab[:n], out_ba[:b.shape[0]]
        result = {"fake_b": fake_b, "fake_a": fake_a,
                  "rec_a": self.generate(generators["ba"], fake_b),
                  "rec_b": self.generate(generators["ab"], fake_a)}
        if identity:
            result.update(same_b=out_ab[n:], same_a=out_ba[b.shape[0]:])
        return result

    def generator_objective(self, generators, discriminators, a, b):
        """The generators' loss through the frozen discriminators -> (loss, aux)."""
        images = self.cycle(generators, a, b)
        adv_ab = self.generator_adversarial(self.scores(discriminators["b"], images["fake_b"]))
        adv_ba = self.generator_adversarial(self.scores(discriminators["a"], images["fake_a"]))
        cycle_a = jnp.mean(jnp.abs(images["rec_a"] - a))
        cycle_b = jnp.mean(jnp.abs(images["rec_b"] - b))
        loss = adv_ab + adv_ba + self.cycle_weight * (cycle_a + cycle_b)
        metrics = {"g_adversarial_ab": adv_ab, "g_adversarial_ba": adv_ba, "cycle_a": cycle_a,
                   "cycle_b": cycle_b, "cycle": cycle_a + cycle_b}
        if self.identity_weight > 0:
            identity_a = jnp.mean(jnp.abs(images["same_a"] - a))
            identity_b = jnp.mean(jnp.abs(images["same_b"] - b))
            loss = loss + self.identity_weight * (identity_a + identity_b)
            metrics.update(identity_a=identity_a, identity_b=identity_b)
        fakes = {"a": images["fake_a"], "b": images["fake_b"]}
        return loss, (fakes, metrics)

    def discriminator_objective(self, discriminators, a, b, fake_a, fake_b):
        """Both discriminators' losses on real images and (pooled) fakes -> (loss, aux)."""
        real_a, real_b = self.scores(discriminators["a"], a), self.scores(discriminators["b"], b)
        scores_fake_a = self.scores(discriminators["a"], fake_a)
        scores_fake_b = self.scores(discriminators["b"], fake_b)
        d_a = self.discriminator_adversarial(real_a, scores_fake_a)
        d_b = self.discriminator_adversarial(real_b, scores_fake_b)
        return d_a + d_b, {"d_a_loss": d_a, "d_b_loss": d_b,
                           "d_a_real": jnp.mean(real_a), "d_a_fake": jnp.mean(scores_fake_a),
                           "d_b_real": jnp.mean(real_b), "d_b_fake": jnp.mean(scores_fake_b)}

    def _update(self, name, params, opt_state, grads):
        return update_player(self.optimizers, name, params, opt_state, grads)

    # The contract.

    def init(self, rng, batch) -> TrainState:
        keys = dict(zip(("ab", "ba", "a", "b"), jax.random.split(rng, 4)))
        a, b = batch["image"][:1], batch["image_b"][:1]
        params = {"generators": {d: self.generator.init(keys[d], a)["params"]
                                 for d in DIRECTIONS},
                  "discriminators": {d: self.discriminator.init(keys[d], b)["params"]
                                     for d in ("a", "b")}}
        pools = None
        if self.pool_size:
            pools = {d: image_pool.init(self.pool_size, self.data.image_shape) for d in "ab"}
        return new_state(params, self.optimizers, pools)

    def train_step(self, state: TrainState, batch, rng):
        """Both generators, then both discriminators on this step's fakes (through the
        pools)."""
        a, b = batch["image"], batch["image_b"]
        params, opt_state = state.params, state.opt_state
        (g_loss, (fakes, g_metrics)), grads = jax.value_and_grad(
            self.generator_objective, has_aux=True)(params["generators"],
                                                    params["discriminators"], a, b)
        params, opt_state = self._update("generators", params, opt_state, grads)
        g_grad_norm = optax.global_norm(grads)
        fakes = jax.lax.stop_gradient(fakes)
        pools = state.model_state
        if self.pool_size:
            rng_a, rng_b = jax.random.split(rng)
            fake_a, pool_a = image_pool.query(pools["a"], fakes["a"], rng_a)
            fake_b, pool_b = image_pool.query(pools["b"], fakes["b"], rng_b)
            pools = {"a": pool_a, "b": pool_b}
        else:
            fake_a, fake_b = fakes["a"], fakes["b"]
        (d_loss, d_metrics), grads = jax.value_and_grad(
            self.discriminator_objective, has_aux=True)(params["discriminators"], a, b,
                                                        fake_a, fake_b)
        params, opt_state = self._update("discriminators", params, opt_state, grads)
        metrics = {**g_metrics, **d_metrics, "g_loss": g_loss, "d_loss": d_loss,
                   "g_grad_norm": g_grad_norm, "d_grad_norm": optax.global_norm(grads)}
        return state.replace(params=params, opt_state=opt_state, model_state=pools), metrics

    def eval_step(self, state: TrainState, batch, rng):
        """Per test example [B] of the current (not averaged) networks: the cycle errors
        |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b|, and each discriminator's mean score of
        real and translated images."""
        a, b = batch["image"], batch["image_b"]
        images = self.cycle(state.params["generators"], a, b)
        d = state.params["discriminators"]

        def mean_score(which, x):
            return jnp.mean(self.scores(d[which], x), axis=(1, 2))

        return {"cycle_a": l1_per_example(images["rec_a"], a),
                "cycle_b": l1_per_example(images["rec_b"], b),
                "d_a_real": mean_score("a", a), "d_a_fake": mean_score("a", images["fake_a"]),
                "d_b_real": mean_score("b", b), "d_b_fake": mean_score("b", images["fake_b"])}

    def translate(self, state: TrainState, images: jax.Array, direction: str) -> jax.Array:
        """contract.Translator: images [B, H, W, C] -> G_AB(images) ("ab") or G_BA ("ba")."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got '{direction}'")
        return self.generate(state.params_for_sampling()["generators"][direction], images)
