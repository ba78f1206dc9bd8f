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

from jaxgen.config import ConfigError, base_config, require
from jaxgen.data.sources import DataSpec
from jaxgen.models.autoencoder import AutoEncoder
from jaxgen.state import TrainState, apply_gradients, make_optimizer

LOSSES = ("mse", "bce")


def default_config() -> ml_collections.ConfigDict:
    """The autoencoder's keys with their defaults; experiments override what differs."""
    c = base_config()
    c.family = "ae"
    c.model.latent_dim = 16
    c.model.features = (32, 64)
    c.model.hidden = 256
    c.model.loss = "mse"
    return c


class AEFamily:
    """config.model: latent_dim, features, hidden, loss (mse | bce)."""

    value_range = "unit"

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        m = config.model
        require(m, "model", ("latent_dim", "features", "hidden", "loss"))
        if m.loss not in LOSSES:
            raise ConfigError(f"model.loss must be one of {LOSSES}, got '{m.loss}'")
        self.loss = m.loss
        self.latent_dim = m.latent_dim
        self.model = AutoEncoder(data.image_shape, m.latent_dim, data.image_shape[-1],
                                 tuple(m.features), m.hidden, gaussian=False)
        self.optimizer = make_optimizer(config.train)

    def encode(self, params, images, labels=None):
        """images [B, H, W, C] -> codes [B, L]."""
        return self.model.apply({"params": params}, images, method=AutoEncoder.encode)

    def decode(self, params, z, labels=None):
        """z [B, L] -> images [B, H, W, C] in [0, 1]."""
        output = self.model.apply({"params": params}, z, method=AutoEncoder.decode)
        return jax.nn.sigmoid(output) if self.loss == "bce" else output

    def per_example_loss(self, params, images):
        """[B]: summed squared error, or summed binary cross-entropy, over pixels."""
        chex.assert_rank(images, 4)
        output = self.model.apply({"params": params}, images)
        if self.loss == "bce":
            per_pixel = jax.nn.softplus(output) - images * output
        else:
            per_pixel = jnp.square(output - images)
        return jnp.sum(per_pixel.reshape(images.shape[0], -1), axis=-1)

    def init(self, rng, batch) -> TrainState:
        params = self.model.init(rng, batch["image"])["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), rng=jnp.zeros((2,), jnp.uint32))

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
        return jnp.clip(self.decode(state.params_for_sampling(), z), 0.0, 1.0)
