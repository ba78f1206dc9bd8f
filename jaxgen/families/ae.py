"""The deterministic autoencoder: a reconstruction loss and no prior.

Its "samples" decode z ~ N(0, I): an autoencoder's latent space has no reason to put
images there, which is the lecture's argument for the VAE; they are shown, not hidden.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.core.config_keys import POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import FamilyBase, new_state
from jaxgen.data.ranges import clip_to_range
from jaxgen.data.sources import DataSpec
from jaxgen.models.autoencoder import AutoEncoder
from jaxgen.core.state import TrainState, apply_gradients, make_optimizer

KEYS = {
    "model.latent_dim": Key(16, "size of the code z", check=POSITIVE),
    "model.features": Key((32, 64), "encoder widths per stride-2 stage (decoder reversed)",
                          check=POSITIVE_ENTRIES),
    "model.hidden": Key(256, "width of the dense layer beside the code", check=POSITIVE),
    "model.loss": Key("mse", "reconstruction loss summed over pixels", choices=("mse", "bce")),
}


def default_config() -> ml_collections.ConfigDict:
    """The autoencoder's keys with their defaults; experiments override what differs."""
    return config_lib.from_keys("ae", KEYS)


class AEFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys ae). Images in [0, 1]."""

    keys = KEYS

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        self.config = config
        m = config.model
        self.loss = m.loss
        self.latent_dim = m.latent_dim
        self.model = AutoEncoder(data.image_shape, m.latent_dim, data.image_shape[-1],
                                 tuple(m.features), m.hidden, gaussian=False)
        self.optimizer = make_optimizer(config.train)

    def encode(self, params, images, labels=None):
        """images [B, H, W, C] -> codes [B, L]."""
        return self.run(self.model, {"params": params}, images, method=AutoEncoder.encode)

    def decode(self, params, z, labels=None):
        """z [B, L] -> images [B, H, W, C] in [0, 1]."""
        output = self.run(self.model, {"params": params}, z, method=AutoEncoder.decode)
        return jax.nn.sigmoid(output) if self.loss == "bce" else output

    def per_example_loss(self, params, images):
        """[B]: summed squared error, or summed binary cross-entropy, over pixels."""
        chex.assert_rank(images, 4)
        output = self.run(self.model, {"params": params}, images)
        if self.loss == "bce":
            per_pixel = jax.nn.softplus(output) - images * output
        else:
            per_pixel = jnp.square(output - images)
        return jnp.sum(per_pixel.reshape(images.shape[0], -1), axis=-1)

    def init(self, rng, batch) -> TrainState:
        return new_state(self.model.init(rng, batch["image"])["params"], self.optimizer)

    def train_step(self, state: TrainState, batch, rng):
        def loss_fn(params):
            return jnp.mean(self.per_example_loss(params, batch["image"]))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return (apply_gradients(state, grads, self.optimizer),
                {"loss": loss, "grad_norm": optax.global_norm(grads)})

    def eval_step(self, state: TrainState, batch, rng):
        params = state.params_for_sampling()
        images = batch["image"]
        reconstruction = self.decode(params, self.encode(params, images))
        mse = jnp.mean(jnp.square(reconstruction - images).reshape(images.shape[0], -1), -1)
        return {"loss": self.per_example_loss(params, images), "mse_per_pixel": mse}

    def sample(self, state: TrainState, rng, num: int, labels=None):
        z = jax.random.normal(rng, (num, self.latent_dim))
        return clip_to_range(self.decode(state.params_for_sampling(), z), self.value_range)
