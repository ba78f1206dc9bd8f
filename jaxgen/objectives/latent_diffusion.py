"""Latent diffusion (Rombach et al. 2022): the diffusion process runs on the codes of a
frozen, trained autoencoder (an `ae` or `vae` workdir of this codebase); the decoder
maps sampled codes back to images.

The foundation's autoencoders have vector codes z [B, L]; the process sees them as
[B, 1, 1, L], where the UNet's 3x3 convolutions reduce to dense layers: a residual MLP
denoiser with the same time embedding, normalisation and conditioning.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.config import ConfigError
from jaxgen.data.pipeline import to_model_range
from jaxgen.data.sources import DataSpec
from jaxgen.objectives import diffusion

SCALE_EXAMPLES = 4096  # training images whose codes set the scale factor


def default_config() -> ml_collections.ConfigDict:
    c = diffusion.default_config()
    c.family = "latent_diffusion"
    c.model.autoencoder_workdir = ""  # a trained ae or vae run
    c.model.channel_mults = (1,)
    c.model.attention_resolutions = ()
    c.eval.vlb_timesteps = 0  # no discrete likelihood in latent space; the loss is reported
    return c


class LatentDiffusionFamily(diffusion.DiffusionFamily):
    """config.model: autoencoder_workdir plus the diffusion keys. Images in the
    autoencoder's value range; the bound of pixel diffusion is not defined here."""

    clip_x0 = False  # scaled codes are unbounded

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        from jaxgen import pretrained
        from jaxgen.data import sources
        if "autoencoder_workdir" not in config.model or not config.model.autoencoder_workdir:
            raise ConfigError("latent_diffusion needs model.autoencoder_workdir, a trained "
                              "ae or vae run")
        ae_config, autoencoder, params = pretrained.load(config.model.autoencoder_workdir,
                                                         "model.autoencoder_workdir")
        if not hasattr(autoencoder, "encode"):
            raise ConfigError(f"model.autoencoder_workdir holds a {ae_config.family}, which "
                              "has no encoder")
        if getattr(autoencoder, "num_classes", 0):
            raise ConfigError("model.autoencoder_workdir: a class-conditional autoencoder "
                              "needs labels to decode; use an unconditional one")
        for key in ("source", "name"):
            if ae_config.data[key] != config.data[key]:
                raise ConfigError(f"model.autoencoder_workdir was trained on data.{key}="
                                  f"'{ae_config.data[key]}', this run uses "
                                  f"'{config.data[key]}'")
        self.autoencoder, self.ae_params = autoencoder, params
        self.value_range = autoencoder.value_range
        self.latent_dim = autoencoder.latent_dim
        # Codes scaled to unit variance (Rombach et al. 2022, sec. 4.3.2), so the
        # schedule's signal-to-noise ratios mean what they mean on pixels.
        train = sources.load(config.data.source, config.data.name, config.data.data_dir)["train"]
        images = to_model_range(train.images[:SCALE_EXAMPLES], train.max_value,
                                self.value_range)
        codes = jax.jit(self._encode)(jnp.asarray(images))
        self.scale = float(1.0 / np.std(np.asarray(codes)))
        super().__init__(config, data)

    def _encode(self, images):
        code = self.autoencoder.encode(self.ae_params, images)
        return code[0] if isinstance(code, tuple) else code  # a VAE's posterior mean

    def space_shape(self, data: DataSpec) -> tuple[int, ...]:
        return (1, 1, self.latent_dim)

    def to_space(self, images):
        return (self.scale * self._encode(images))[:, None, None, :]

    def to_images(self, x0):
        images = self.autoencoder.decode(self.ae_params, x0[:, 0, 0, :] / self.scale)
        low, high = (0.0, 1.0) if self.value_range == "unit" else (-1.0, 1.0)
        return jnp.clip(images, low, high)

    def evaluate_step(self, state, batch, rng):
        return self.eval_step(state, batch, rng)

    def forward_strip(self, x0, rng, num_points: int = 8):
        """An image's code noised at evenly spaced t, decoded: [num_points, H, W, C]."""
        codes = super().forward_strip(self.to_space(x0[None])[0], rng, num_points)
        return self.to_images(codes)
