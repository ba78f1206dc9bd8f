"""A small convolutional classifier: the feature extractor of the evaluation metrics."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.layers import timestep_embedding


class ConvClassifier(nn.Module):
    """images [B, H, W, C] (timesteps t int [B] if time_conditioned) ->
    (features [B, feature_dim], logits [B, num_classes]).

    Conv-ReLU-pool stages, then one dense ReLU layer whose activations are the
    features the FID family of metrics compares (the role Inception's pool3 plays).
    A time-conditioned classifier (for classifier guidance, Dhariwal & Nichol 2021) adds
    a projection of the timestep embedding to every stage.
    """
    num_classes: int
    features: tuple[int, ...] = (32, 64)
    feature_dim: int = 128
    dropout: float = 0.0
    time_conditioned: bool = False

    @nn.compact
    def __call__(self, images: jax.Array, t: jax.Array | None = None,
                 train: bool = False) -> tuple[jax.Array, jax.Array]:
        chex.assert_rank(images, 4)
        emb = None
        if self.time_conditioned:
            chex.assert_shape(t, (images.shape[0],))
            emb = nn.silu(nn.Dense(128)(timestep_embedding(t, 64).astype(images.dtype)))
        h = images
        for width in self.features:
            h = nn.relu(nn.Conv(width, (3, 3))(h))
            if emb is not None:
                h = h + nn.Dense(width)(emb)[:, None, None, :]
            h = nn.relu(nn.Conv(width, (3, 3))(h))
            # Pooling stops at 2x2 so that 8x8 digits and 32x32 CIFAR share one design.
            if h.shape[1] > 2:
                h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        features = nn.relu(nn.Dense(self.feature_dim)(h))
        logits = nn.Dense(self.num_classes)(nn.Dropout(self.dropout)(features,
                                                                      deterministic=not train))
        return features, logits


def predict(model: ConvClassifier, params, images: jax.Array) -> dict[str, jax.Array]:
    """{"features": [B, D], "label": int32 [B], "probs": [B, K]} for images in [0, 1]."""
    features, logits = model.apply({"params": params}, images)
    return {"features": features, "label": jnp.argmax(logits, -1).astype(jnp.int32),
            "probs": jax.nn.softmax(logits)}
