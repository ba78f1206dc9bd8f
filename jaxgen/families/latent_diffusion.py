"""Latent diffusion (Rombach et al. 2022): the diffusion process runs on the codes of a
frozen, trained autoencoder (an `ae` or `vae` workdir of this codebase); the decoder
maps sampled codes back to images.

The foundation's autoencoders have vector codes z [B, L]; the process sees them as
[B, 1, 1, L], where the UNet's 3x3 convolutions reduce to dense layers: a residual MLP
denoiser with the same time embedding, normalisation and conditioning.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import Key
from jaxgen.core.contract import FrozenInput, LatentModel, TrainedRun
from jaxgen.data.ranges import clip_to_range, to_model_range
from jaxgen.data.sources import DataSpec
from jaxgen.families import diffusion
from jaxgen.pictures import latent

SCALE_EXAMPLES = 4096  # training images whose codes set the scale factor

KEYS = {
    **config_lib.with_defaults(diffusion.KEYS, **{
        "model.channel_mults": (1,),
        "model.attention_resolutions": (),
        "eval.vlb_timesteps": 0,  # no discrete likelihood in latent space; the loss is reported
        # Rombach et al. 2022's schedule: the cosine one ends at alpha_bar_T = 2.4e-9, and the
        # first sampling step from t = T multiplies the eps error by ~600 in code space,
        # where no clipping bounds x0 (measured: sampled codes 1,000x the data codes' norm).
        "model.schedule": "scaled_linear",
        "model.beta_start": 0.00085,
        "model.beta_end": 0.012,
    }),
    "model.autoencoder_workdir": Key("", "a trained ae or vae run whose codes are diffused"),
}


def default_config() -> ml_collections.ConfigDict:
    return config_lib.from_keys("latent_diffusion", KEYS)


class LatentDiffusionFamily(diffusion.DiffusionFamily):
    """Keys: `KEYS` (python -m jaxgen.keys latent_diffusion). Images in the autoencoder's value
    range; the bound of pixel diffusion is not defined here."""

    keys = KEYS
    clip_x0 = False  # scaled codes are unbounded

    @classmethod
    def frozen_inputs_needed(cls, config) -> dict[str, FrozenInput]:
        """The autoencoder whose codes are diffused, and what diffusion builds on."""
        if not config.model.autoencoder_workdir:
            raise ConfigError("latent_diffusion needs model.autoencoder_workdir, a trained "
                              "ae or vae run")
        return {"model.autoencoder_workdir": FrozenInput("run", config.model.autoencoder_workdir),
                **super().frozen_inputs_needed(config)}

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec,
                 frozen: Mapping[str, Any] | None = None):
        config_lib.check_keys(config, self.keys)
        if config.model.learn_variance or config.model.loss == "vlb":
            raise ConfigError("model.learn_variance and model.loss=vlb train on the bound, "
                              "whose decoder term is one of pixels: latent diffusion keeps the "
                              "simple loss and the fixed variance")
        type(self).frozen_inputs_needed(config)
        run: TrainedRun = frozen["model.autoencoder_workdir"]
        if not isinstance(run.family, LatentModel):
            raise ConfigError(f"model.autoencoder_workdir holds a {run.config.family}, which "
                              "has no encoder")
        if run.family.num_classes:
            raise ConfigError("model.autoencoder_workdir: a class-conditional autoencoder "
                              "needs labels to decode; use an unconditional one")
        for key in ("source", "name"):
            if run.config.data[key] != config.data[key]:
                raise ConfigError(f"model.autoencoder_workdir was trained on data.{key}="
                                  f"'{run.config.data[key]}', this run uses "
                                  f"'{config.data[key]}'")
        self.autoencoder, self.ae_params = run.family, run.state.params_for_sampling()
        self.value_range = self.autoencoder.value_range
        self.latent_dim = self.autoencoder.latent_dim
        # Codes scaled to unit variance (Rombach et al. 2022, sec. 4.3.2), so the
        # schedule's signal-to-noise ratios mean what they mean on pixels.
        train = run.splits["train"]
        images = to_model_range(train.images[:SCALE_EXAMPLES], train.max_value,
                                self.value_range)
        codes = jax.jit(self._encode)(jnp.asarray(images))
        self.scale = float(1.0 / np.std(np.asarray(codes)))
        super().__init__(config, data, frozen)

    def _encode(self, images):
        return latent.encode_mean(self.autoencoder, self.ae_params, images)

    def space_shape(self, data: DataSpec) -> tuple[int, ...]:
        return (1, 1, self.latent_dim)

    def to_space(self, images):
        return (self.scale * self._encode(images))[:, None, None, :]

    def to_images(self, x0):
        images = self.autoencoder.decode(self.ae_params, x0[:, 0, 0, :] / self.scale)
        return clip_to_range(images, self.value_range)

    def likelihood_step(self, state, batch, rng):
        return self.eval_step(state, batch, rng)

    def forward_strip(self, x0, rng, num_points: int = 8):
        """An image's code noised at evenly spaced t, decoded: [num_points, H, W, C]."""
        codes = super().forward_strip(self.to_space(x0[None])[0], rng, num_points)
        return self.to_images(codes)
