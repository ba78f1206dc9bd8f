"""Supervised classification as a family: the evaluation's feature extractor, and the
noisy-image classifier of classifier guidance, train through the same trainer as every
generative model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.config import ConfigError, base_config, require
from jaxgen.data.sources import DataSpec
from jaxgen.models.classifier import ConvClassifier
from jaxgen.objectives import schedules
from jaxgen.state import TrainState, apply_gradients, make_optimizer


def default_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.family = "classifier"
    c.model.features = (32, 64)
    c.model.feature_dim = 128
    c.model.dropout = 0.3
    c.train.num_steps = 3000
    c.train.batch_size = 128
    c.train.weight_decay = 1e-4
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.checkpoint.every_steps = 1000
    c.checkpoint.keep = 1
    return c


def noisy_default_config() -> ml_collections.ConfigDict:
    """The classifier p(y | x_t, t) of classifier guidance: its schedule and T must be
    those of the diffusion model it guides."""
    c = default_config()
    c.family = "noisy_classifier"
    c.model.dropout = 0.0
    c.model.schedule = "cosine"
    c.model.num_timesteps = 1000
    return c


class ClassifierFamily:
    """config.model: features, feature_dim, dropout. Images in [0, 1]; no sampler."""

    value_range = "unit"
    time_conditioned = False

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        require(config.model, "model", ("features", "feature_dim", "dropout"))
        if data.num_classes < 2:
            raise ConfigError(f"the classifier needs labelled data, got {data.num_classes} class")
        self.num_classes = data.num_classes
        self.model = ConvClassifier(data.num_classes, tuple(config.model.features),
                                    config.model.feature_dim, config.model.dropout,
                                    self.time_conditioned)
        self.optimizer = make_optimizer(config.train)

    def inputs(self, batch, rng):
        """(images, timesteps or None) the network sees."""
        del rng
        return batch["image"], None

    def logits(self, params, images, t=None, train=False, rng=None):
        _, logits = self.model.apply({"params": params}, images, t, train=train,
                                     rngs={"dropout": rng} if train else None)
        return logits

    def init(self, rng, batch) -> TrainState:
        images, t = self.inputs(batch, rng)
        params = self.model.init(rng, images, t)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), rng=jnp.zeros((2,), jnp.uint32))

    def train_step(self, state: TrainState, batch, rng):
        # Dropout draws from the step's key itself and the noisy inputs from a fold of it, so
        # the plain classifier's numbers do not depend on the noisy variant's existence.
        images, t = self.inputs(batch, jax.random.fold_in(rng, 1))

        def loss_fn(params):
            logits = self.logits(params, images, t, True, rng)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) == batch["label"])

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return (apply_gradients(state, grads, self.optimizer),
                {"loss": loss, "accuracy": accuracy, "grad_norm": optax.global_norm(grads)})

    def eval_step(self, state: TrainState, batch, rng):
        images, t = self.inputs(batch, rng)
        logits = self.logits(state.params_for_sampling(), images, t)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return {"loss": loss,
                "accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)}


class NoisyClassifierFamily(ClassifierFamily):
    """p(y | x_t, t) on x_t ~ q(x_t | x_0) at uniform t (Dhariwal & Nichol 2021, sec. 4).
    config.model adds schedule and num_timesteps. Images in [-1, 1], as diffusion's."""

    value_range = "symmetric"
    time_conditioned = True

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        require(config.model, "model", ("schedule", "num_timesteps"))
        super().__init__(config, data)
        self.schedule = schedules.make_schedule(config.model.schedule,
                                                config.model.num_timesteps)

    def inputs(self, batch, rng):
        x0 = batch["image"]
        t_rng, noise_rng = jax.random.split(rng)
        t = jax.random.randint(t_rng, (x0.shape[0],), 0, self.schedule.num_steps)
        abar = self.schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
        noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise, t
