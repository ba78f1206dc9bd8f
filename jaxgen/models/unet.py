"""The UNet of DDPM (Ho et al. 2020, appendix B), with class conditioning.

Residual blocks with GroupNorm and SiLU, a sinusoidal timestep embedding through an
MLP (a class embedding added to it), single-head self-attention at chosen resolutions,
skip connections from every encoder stage to the decoder, dropout, stride-2 convolutions
down and nearest-neighbour upsampling + convolution up (no transposed convolution: ~20x slower on
XLA:CPU, and free of checkerboard artefacts).
"""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.layers import timestep_embedding, upsample_nearest


class ResBlock(nn.Module):
    """x [B, H, W, C], emb [B, E] -> [B, H, W, features]."""
    features: int
    dropout: float
    num_groups: int

    @nn.compact
    def __call__(self, x, emb, train: bool):
        h = nn.silu(nn.GroupNorm(self.num_groups)(x))
        h = nn.Conv(self.features, (3, 3))(h)
        h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(self.num_groups)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = nn.Conv(self.features, (3, 3))(h)
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual: [B, H, W, C] -> same."""
    num_groups: int

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        y = nn.GroupNorm(self.num_groups)(x).reshape(b, h * w, c)
        q, k, v = (nn.Dense(c, name=name)(y) for name in ("query", "key", "value"))
        # The softmax in float32 whatever the compute dtype (mixed precision).
        logits = jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.float32) / math.sqrt(c)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = nn.Dense(c, name="out")(jnp.einsum("bqk,bkc->bqc", weights, v))
        return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
    """x_t [B, H, W, C], t int [B] (labels int [B] in 0..num_classes, where num_classes is
    the null label of classifier-free guidance) -> [B, H, W, out_channels].

    channels: width of the first stage; channel_mults: one multiplier per resolution;
    attention_resolutions: side lengths (in pixels) that get self-attention.
    """
    out_channels: int
    channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_classes: int = 0
    num_groups: int = 32

    @nn.compact
    def __call__(self, x, t, labels=None, train: bool = False):
        chex.assert_rank(x, 4)
        chex.assert_shape(t, (x.shape[0],))
        emb_dim = 4 * self.channels
        emb = timestep_embedding(t, self.channels).astype(x.dtype)
        emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))
        if self.num_classes:
            chex.assert_shape(labels, (x.shape[0],))
            emb = emb + nn.Embed(self.num_classes + 1, emb_dim, name="label_embedding")(labels)

        def block(h, features):
            h = ResBlock(features, self.dropout, self.num_groups)(h, emb, train)
            if h.shape[1] in self.attention_resolutions:
                h = AttentionBlock(self.num_groups)(h)
            return h

        h = nn.Conv(self.channels, (3, 3))(x)
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = block(h, self.channels * mult)
                skips.append(h)
            if level != len(self.channel_mults) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=2)(h)
                skips.append(h)

        h = ResBlock(h.shape[-1], self.dropout, self.num_groups)(h, emb, train)
        h = AttentionBlock(self.num_groups)(h)
        h = ResBlock(h.shape[-1], self.dropout, self.num_groups)(h, emb, train)

        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), self.channels * mult)
            if level != 0:
                skip_shape = skips[-1].shape
                h = upsample_nearest(h)[:, :skip_shape[1], :skip_shape[2]]
                h = nn.Conv(h.shape[-1], (3, 3))(h)
        assert not skips
        h = nn.silu(nn.GroupNorm(self.num_groups)(h))
        # Zero-initialised output layer: the untrained network predicts 0 (Ho et al. 2020).
        return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
