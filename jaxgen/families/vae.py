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

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import NON_NEGATIVE, POSITIVE, POSITIVE_ENTRIES, Key
from jaxgen.core.contract import FamilyBase, bits_per_dim, new_state
from jaxgen.data.ranges import clip_to_range
from jaxgen.data.sources import DataSpec
from jaxgen.losses import likelihoods as lk
from jaxgen.models.autoencoder import AutoEncoder
from jaxgen.core.state import TrainState, apply_gradients, make_optimizer

KEYS = {
    "model.latent_dim": Key(16, "size of z", check=POSITIVE),
    "model.features": Key((32, 64), "encoder widths per stride-2 stage (decoder reversed)",
                          check=POSITIVE_ENTRIES),
    "model.hidden": Key(256, "width of the dense layer beside the code", check=POSITIVE),
    "model.decoder": Key("bernoulli", "p(x | z): discretized_gaussian is a distribution over "
                                      "the pixel grid (raw pixels, no dequantisation)",
                         choices=lk.DECODERS),
    "model.min_log_variance": Key(lk.MIN_LOG_VARIANCE, "floor of a learned decoder "
                                  "log-variance: -10 bounds dequantised 8-bit data at 2.11 "
                                  "bits/dim, -6 (runs before this key) at 5.0",
                                  saved_before=-6.0),
    "model.decoder_std": Key(0.1, "the fixed standard deviation of gaussian_fixed",
                             check=POSITIVE),
    "model.beta": Key(1.0, "weight of the KL term (1: the ELBO)", check=NON_NEGATIVE),
    "model.conditional": Key(False, "condition encoder and decoder on the class label"),
    "eval.iwae_samples": Key(1000, "K of the importance-weighted bound in jaxgen.evaluate "
                                   "(0: none)", check=NON_NEGATIVE),
    "eval.iwae_chunk": Key(50, "IWAE samples per decoder pass (divides iwae_samples)",
                           check=POSITIVE),
}


def default_config(decoder: str = "bernoulli") -> ml_collections.ConfigDict:
    """The VAE's keys with their defaults; experiments override what differs."""
    c = config_lib.from_keys("vae", KEYS)
    # Bernoulli likelihoods are proper on binary pixels, Gaussian densities on dequantised
    # pixels, the discretised Gaussian on the raw pixel grid.
    c.data.binarize = decoder == "bernoulli"
    c.data.dequantize = decoder not in ("bernoulli", "discretized_gaussian")
    c.model.decoder = decoder
    return c


class VAEFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys vae). Images in [0, 1]."""

    keys = KEYS

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        m = config.model
        if config.eval.iwae_samples % config.eval.iwae_chunk:
            raise ConfigError(f"eval.iwae_samples={config.eval.iwae_samples} is not divisible by "
                              f"eval.iwae_chunk={config.eval.iwae_chunk}")
        self.config = config
        self.data = data
        self.decoder = m.decoder
        self.beta = m.beta
        self.fixed_log_variance = 2.0 * math.log(m.decoder_std)
        self.min_log_variance = m.min_log_variance
        self.num_levels = data.max_value + 1
        if m.decoder == "discretized_gaussian" and (config.data.dequantize or
                                                    config.data.binarize):
            raise ConfigError("model.decoder=discretized_gaussian models the raw pixel grid: "
                              "set data.dequantize=False and data.binarize=False")
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
        elif m.decoder == "discretized_gaussian":
            self.discrete_offset = 0.0

    # Building blocks.

    def encode(self, params, images, labels=None):
        """images [B, H, W, C] -> posterior mean [B, L], log-variance [B, L]."""
        return self.run(self.model, {"params": params}, images, labels, method=AutoEncoder.encode)

    def decode(self, params, z, labels=None):
        """z [B, L] -> mean image [B, H, W, C] of p(x | z)."""
        output = self.run(self.model, {"params": params}, z, labels, method=AutoEncoder.decode)
        return lk.decoder_mean(output, self.decoder)

    def log_likelihood(self, params, x, z, labels):
        """log p(x | z) summed over pixels: [B]."""
        output = self.run(self.model, {"params": params}, z, labels, method=AutoEncoder.decode)
        return lk.decoder_log_likelihood(x, output, self.decoder, self.fixed_log_variance,
                                         self.min_log_variance, self.num_levels)

    def per_example_terms(self, params, batch, rng):
        """(reconstruction nats [B], KL nats [B]) with one reparameterised z per example."""
        x, labels = batch["image"], self.labels(batch)
        chex.assert_rank(x, 4)
        mean, log_variance = self.encode(params, x, labels)
        # Reparameterisation (Kingma & Welling 2014): z = mean + sigma * eps keeps
        # the sample differentiable in the encoder's outputs.
        eps = jax.random.normal(rng, mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * log_variance) * eps
        recon = -self.log_likelihood(params, x, z, labels)
        return recon, lk.kl_standard_normal(mean, log_variance)

    # The contract.

    def init(self, rng, batch) -> TrainState:
        params = self.model.init(rng, batch["image"], self.labels(batch))["params"]
        return new_state(params, self.optimizer)

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

    def likelihood_step(self, state: TrainState, batch, rng):
        """eval_step plus the IWAE bound with config.eval.iwae_samples samples (0: none)."""
        if self.config.eval.iwae_samples == 0:
            return self.eval_step(state, batch, rng)
        params = state.params_for_sampling()
        elbo_rng, iwae_rng = jax.random.split(rng)
        recon, kl = self.per_example_terms(params, batch, elbo_rng)
        x, labels = batch["image"], self.labels(batch)
        mean, log_variance = self.encode(params, x, labels)

        def log_joint(z):
            return self.log_likelihood(params, x, z, labels) + lk.standard_normal_log_density(z)

        iwae = lk.iwae_log_likelihood(log_joint, mean, log_variance, iwae_rng,
                                      self.config.eval.iwae_samples, self.config.eval.iwae_chunk)
        return self._with_bits({"neg_elbo": recon + kl, "recon": recon, "kl": kl,
                                "iwae_nll": -iwae})

    def _with_bits(self, metrics):
        if self.discrete_offset is None:
            return metrics
        for key in ("neg_elbo", "iwae_nll"):
            if key in metrics:
                metrics[f"{key}_bits_per_dim"] = bits_per_dim(metrics[key], self.num_dims,
                                                              self.discrete_offset)
        return metrics

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images from the prior: z ~ N(0, I), x = E[p(x | z)], [num, H, W, C] in [0, 1]."""
        labels = self.cycled_labels(num, labels)
        z = jax.random.normal(rng, (num, self.latent_dim))
        return clip_to_range(self.decode(state.params_for_sampling(), z, labels),
                             self.value_range)
