"""The variational autoencoder (Kingma & Welling 2014), optionally class-conditional.

Loss per example: recon + beta * KL, with -ELBO = -E_q[log p(x|z)] + KL(q(z|x) || p(z))
reported in nats (beta = 1 gives the true bound). Evaluation adds the importance-
weighted bound (Burda et al. 2016) and bits/dim where the likelihood is discrete.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.config import ConfigError, base_config, require
from jaxgen.data.sources import DataSpec
from jaxgen.models.autoencoder import AutoEncoder
from jaxgen.objectives import likelihoods as lk
from jaxgen.state import TrainState, apply_gradients, make_optimizer


def default_config(decoder: str = "bernoulli") -> ml_collections.ConfigDict:
    """The VAE's keys with their defaults; experiments override what differs."""
    c = base_config()
    c.family = "vae"
    # Bernoulli likelihoods are proper on binary pixels; Gaussian ones on dequantised pixels.
    c.data.binarize = decoder == "bernoulli"
    c.data.dequantize = decoder != "bernoulli"
    c.model.latent_dim = 16
    c.model.features = (32, 64)
    c.model.hidden = 256
    c.model.decoder = decoder
    c.model.decoder_std = 0.1  # gaussian_fixed only
    c.model.beta = 1.0
    c.model.conditional = False
    c.eval.iwae_samples = 1000
    c.eval.iwae_chunk = 50
    return c


class VAEFamily:
    """config.model: latent_dim, features, hidden, decoder (bernoulli | gaussian_fixed |
    gaussian_learned), decoder_std (gaussian_fixed), beta, conditional.
    config.eval: iwae_samples, iwae_chunk (used by jaxgen.evaluate)."""

    value_range = "unit"

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        m = config.model
        require(m, "model", ("latent_dim", "features", "hidden", "decoder", "decoder_std", "beta",
                             "conditional"))
        require(config.eval, "eval", ("iwae_samples", "iwae_chunk"))
        if m.decoder not in lk.DECODERS:
            raise ConfigError(f"model.decoder must be one of {lk.DECODERS}, got '{m.decoder}'")
        if m.latent_dim <= 0 or m.beta < 0 or m.decoder_std <= 0:
            raise ConfigError("model.latent_dim and model.decoder_std must be positive, "
                              "model.beta non-negative")
        if config.eval.iwae_samples < 0 or config.eval.iwae_chunk <= 0:
            raise ConfigError("eval.iwae_samples must be >= 0 and eval.iwae_chunk positive")
        if config.eval.iwae_samples % config.eval.iwae_chunk:
            raise ConfigError(f"eval.iwae_samples={config.eval.iwae_samples} is not divisible by "
                              f"eval.iwae_chunk={config.eval.iwae_chunk}")
        self.config = config
        self.data = data
        self.decoder = m.decoder
        self.beta = m.beta
        self.fixed_log_variance = 2.0 * math.log(m.decoder_std)
        self.num_classes = data.num_classes if m.conditional else 0
        self.latent_dim = m.latent_dim
        self.model = AutoEncoder(data.image_shape, m.latent_dim,
                                 lk.decoder_channels(m.decoder, data.image_shape[-1]),
                                 tuple(m.features), m.hidden, gaussian=True,
                                 num_classes=self.num_classes)
        self.optimizer = make_optimizer(config.train)
        self.num_dims = math.prod(data.image_shape)
        # bits/dim is a likelihood of discrete data only for Bernoulli on binarised pixels
        # or a density on dequantised pixels (Theis et al. 2016); else it is not reported.
        self.discrete_offset = None
        if m.decoder == "bernoulli" and config.data.binarize:
            self.discrete_offset = 0.0
        elif m.decoder != "bernoulli" and config.data.dequantize:
            self.discrete_offset = self.num_dims * math.log(data.max_value + 1)

    # Building blocks.

    def _labels(self, batch):
        return batch["label"] if self.num_classes else None

    def encode(self, params, images, labels=None):
        """images [B, H, W, C] -> posterior mean [B, L], log-variance [B, L]."""
        return self.model.apply({"params": params}, images, labels, method=AutoEncoder.encode)

    def decode(self, params, z, labels=None):
        """z [B, L] -> mean image [B, H, W, C] of p(x | z)."""
        output = self.model.apply({"params": params}, z, labels, method=AutoEncoder.decode)
        return lk.decoder_mean(output, self.decoder)

    def _log_likelihood(self, params, x, z, labels):
        output = self.model.apply({"params": params}, z, labels, method=AutoEncoder.decode)
        return lk.decoder_log_likelihood(x, output, self.decoder, self.fixed_log_variance)

    def per_example_terms(self, params, batch, rng):
        """(reconstruction nats [B], KL nats [B]) with one reparameterised z per example."""
        x, labels = batch["image"], self._labels(batch)
        chex.assert_rank(x, 4)
        mean, log_variance = self.encode(params, x, labels)
        # Reparameterisation (Kingma & Welling 2014): z = mean + sigma * eps keeps
        # the sample differentiable in the encoder's outputs.
        eps = jax.random.normal(rng, mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * log_variance) * eps
        recon = -self._log_likelihood(params, x, z, labels)
        return recon, lk.kl_standard_normal(mean, log_variance)

    # The Family contract.

    def init(self, rng, batch) -> TrainState:
        params = self.model.init(rng, batch["image"], self._labels(batch))["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=self.optimizer.init(params), rng=jnp.zeros((2,), jnp.uint32))

    def train_step(self, state: TrainState, batch, rng):
        def loss_fn(params):
            recon, kl = self.per_example_terms(params, batch, rng)
            loss = jnp.mean(recon + self.beta * kl)
            return loss, {"neg_elbo": jnp.mean(recon + kl), "recon": jnp.mean(recon),
                          "kl": jnp.mean(kl)}

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        return apply_gradients(state, grads, self.optimizer), metrics

    def eval_step(self, state: TrainState, batch, rng):
        recon, kl = self.per_example_terms(state.params_for_sampling(), batch, rng)
        return self._with_bits({"neg_elbo": recon + kl, "recon": recon, "kl": kl})

    def evaluate_step(self, state: TrainState, batch, rng):
        """eval_step plus the IWAE bound with config.eval.iwae_samples samples (0: none)."""
        if self.config.eval.iwae_samples == 0:
            return self.eval_step(state, batch, rng)
        params = state.params_for_sampling()
        elbo_rng, iwae_rng = jax.random.split(rng)
        recon, kl = self.per_example_terms(params, batch, elbo_rng)
        x, labels = batch["image"], self._labels(batch)
        mean, log_variance = self.encode(params, x, labels)

        def log_joint(z):
            return (self._log_likelihood(params, x, z, labels)
                    + lk.standard_normal_log_density(z))

        iwae = lk.iwae_log_likelihood(log_joint, mean, log_variance, iwae_rng,
                                      self.config.eval.iwae_samples, self.config.eval.iwae_chunk)
        return self._with_bits({"neg_elbo": recon + kl, "recon": recon, "kl": kl,
                                "iwae_nll": -iwae})

    def _with_bits(self, metrics):
        if self.discrete_offset is None:
            return metrics
        to_bits = 1.0 / (self.num_dims * math.log(2.0))
        for key in ("neg_elbo", "iwae_nll"):
            if key in metrics:
                metrics[f"{key}_bits_per_dim"] = (metrics[key] + self.discrete_offset) * to_bits
        return metrics

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images from the prior: z ~ N(0, I), x = E[p(x | z)], [num, H, W, C] in [0, 1]."""
        if self.num_classes and labels is None:
            labels = jnp.arange(num) % self.num_classes
        z = jax.random.normal(rng, (num, self.latent_dim))
        return jnp.clip(self.decode(state.params_for_sampling(), z, labels), 0.0, 1.0)
