"""Supervised classification as a family: the evaluation's feature extractor, and the
noisy-image classifier of classifier guidance, train through the same trainer as every
generative model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import FRACTION, POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import FamilyBase, new_state
from jaxgen.data.sources import DataSpec
from jaxgen.diffusion import schedules
from jaxgen.diffusion.process import GaussianProcess
from jaxgen.models.classifier import ConvClassifier
from jaxgen.core.state import TrainState, apply_gradients, make_optimizer

KEYS = {
    "model.features": Key((32, 64), "widths of the conv stages", check=POSITIVE_ENTRIES),
    "model.feature_dim": Key(128, "width of the feature layer (the FID features)",
                             check=POSITIVE),
    "model.dropout": Key(0.3, "dropout before the logits", check=FRACTION),
    "train.num_steps": Key(3000, "training steps", check=POSITIVE),
    "train.batch_size": Key(128, "global batch size", check=POSITIVE),
    "train.weight_decay": Key(1e-4, "AdamW weight decay"),
    "train.log_every_steps": Key(100, "steps between logged training metrics", check=POSITIVE),
    "eval.every_steps": Key(1000, "steps between test evaluations", check=POSITIVE),
    "checkpoint.every_steps": Key(1000, "steps between checkpoints", check=POSITIVE),
    "checkpoint.keep": Key(1, "checkpoints kept", check=POSITIVE),
}

NOISY_KEYS = {
    **config_lib.with_defaults(KEYS, **{"model.dropout": 0.0}),
    # Its schedule and T must be those of the diffusion model it guides.
    "model.schedule": Key("cosine", "noise schedule of x_t", choices=schedules.SCHEDULES),
    "model.num_timesteps": Key(1000, "T of the diffusion model it guides", check=POSITIVE),
}


def default_config() -> ml_collections.ConfigDict:
    return config_lib.from_keys("classifier", KEYS)


def noisy_default_config() -> ml_collections.ConfigDict:
    """The classifier p(y | x_t, t) of classifier guidance."""
    return config_lib.from_keys("noisy_classifier", NOISY_KEYS)


class ClassifierFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys classifier). Images in [0, 1]; no sampler."""

    keys = KEYS
    time_conditioned = False

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        if data.num_classes < 2:
            raise ConfigError(f"the classifier needs labelled data, got {data.num_classes} class")
        self.config = config
        self.num_labels = data.num_classes
        self.model = ConvClassifier(data.num_classes, tuple(config.model.features),
                                    config.model.feature_dim, config.model.dropout,
                                    self.time_conditioned)
        self.optimizer = make_optimizer(config.train)

    def inputs(self, batch, rng):
        """(images, timesteps or None) the network sees."""
        del rng
        return batch["image"], None

    def logits(self, params, images, t=None, train=False, rng=None):
        _, logits = self.run(self.model, {"params": params}, images, t, train=train,
                             rngs={"dropout": rng} if train else None)
        return logits

    def init(self, rng, batch) -> TrainState:
        images, t = self.inputs(batch, rng)
        return new_state(self.model.init(rng, images, t)["params"], self.optimizer)

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
    Keys: `NOISY_KEYS`. Images in [-1, 1], as diffusion's."""

    keys = NOISY_KEYS
    value_range = "symmetric"
    time_conditioned = True

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        super().__init__(config, data)
        self.process = GaussianProcess(schedules.make_schedule(config.model.schedule,
                                                               config.model.num_timesteps))

    def inputs(self, batch, rng):
        x0 = batch["image"]
        t_rng, noise_rng = jax.random.split(rng)
        t = jax.random.randint(t_rng, (x0.shape[0],), 0, self.process.num_timesteps)
        noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
        return self.process.q_sample(x0, t, noise), t
