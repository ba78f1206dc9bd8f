"""Supervised classification as a family: the evaluation's feature extractor trains
through the same trainer as every generative model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.config import ConfigError, base_config, require
from jaxgen.data.sources import DataSpec
from jaxgen.models.classifier import ConvClassifier
from jaxgen.state import TrainState, make_optimizer


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


class ClassifierFamily:
    """config.model: features, feature_dim, dropout. Images in [0, 1]; no sampler."""

    value_range = "unit"

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        require(config.model, "model", ("features", "feature_dim", "dropout"))
        if data.num_classes < 2:
            raise ConfigError(f"the classifier needs labelled data, got {data.num_classes} class")
        self.num_classes = data.num_classes
        self.model = ConvClassifier(data.num_classes, tuple(config.model.features),
                                    config.model.feature_dim, config.model.dropout)
        self.optimizer = make_optimizer(config.train)

    def init(self, rng, batch) -> TrainState:
        params = self.model.init(rng, batch["image"])["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), rng=jnp.zeros((2,), jnp.uint32))

    def train_step(self, state: TrainState, batch, rng):
        def loss_fn(params):
            _, logits = self.model.apply({"params": params}, batch["image"], train=True,
                                         rngs={"dropout": rng})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, jnp.mean(jnp.argmax(logits, -1) == batch["label"])

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return (state.replace(params=params, opt_state=opt_state),
                {"loss": loss, "accuracy": accuracy, "grad_norm": optax.global_norm(grads)})

    def eval_step(self, state: TrainState, batch, rng):
        del rng
        _, logits = self.model.apply({"params": state.params_for_sampling()}, batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return {"loss": loss,
                "accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)}
