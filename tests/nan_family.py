"""A VAE whose loss turns NaN from step 25 on: drives the NaN-guard test through the
plug-in path (config.family = "tests.nan_family:NanVAE")."""

import jax.numpy as jnp

from jaxgen.families.vae import VAEFamily

NAN_FROM_STEP = 25


class NanVAE(VAEFamily):
    def train_step(self, state, batch, rng):
        new_state, metrics = super().train_step(state, batch, rng)
        poisoned = jnp.where(state.step >= NAN_FROM_STEP, jnp.nan, 1.0)
        return new_state, dict(metrics, loss=metrics["loss"] * poisoned)
