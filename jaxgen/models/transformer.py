"""Transformer pieces for text conditioning: a text encoder, and the spatial transformer block
of latent diffusion's UNet (Rombach et al. 2022, fig. 3 and appendix; the `SpatialTransformer`
of the CompVis code): self-attention over the image positions, cross-attention from those
positions to a prompt's token embeddings, a feed-forward layer.

Masks: True where a key may be attended to. Padded tokens are masked out of every attention, so
their embeddings change nothing downstream (tests/test_text_to_image.py).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def attend(q, k, v, mask=None):
    """Scaled dot-product attention over heads. q [B, Q, N, D], k and v [B, K, N, D], mask
    bool [B, K] (keys that may be attended to) -> [B, Q, N, D]. The softmax runs in float32
    whatever the compute dtype."""
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bnqk,bknd->bqnd", weights, v)


class MultiHeadAttention(nn.Module):
    """x [B, Q, C] attends to context [B, K, E] (x itself when None) -> [B, Q, C]."""
    heads: int

    @nn.compact
    def __call__(self, x, context=None, mask=None):
        context = x if context is None else context
        b, c = x.shape[0], x.shape[-1]
        if c % self.heads:
            raise ValueError(f"{self.heads} attention heads do not divide {c} channels")
        d = c // self.heads
        split = lambda a: a.reshape(b, a.shape[1], self.heads, d)  # noqa: E731
        q = split(nn.Dense(c, use_bias=False, name="query")(x))
        k = split(nn.Dense(c, use_bias=False, name="key")(context))
        v = split(nn.Dense(c, use_bias=False, name="value")(context))
        mixed = attend(q, k, v, mask).reshape(b, x.shape[1], c)
        return nn.Dense(c, name="out")(mixed)


class TransformerLayer(nn.Module):
    """Pre-norm layer: self-attention, then (given a context) cross-attention, then a GELU MLP
    (4x wide), each residual. x [B, Q, C], context [B, K, E], masks bool [B, Q] / [B, K]."""
    heads: int

    @nn.compact
    def __call__(self, x, self_mask=None, context=None, context_mask=None):
        x = x + MultiHeadAttention(self.heads, name="self_attention")(
            nn.LayerNorm()(x), mask=self_mask)
        if context is not None:
            x = x + MultiHeadAttention(self.heads, name="cross_attention")(
                nn.LayerNorm()(x), context, context_mask)
        c = x.shape[-1]
        h = nn.Dense(4 * c)(nn.LayerNorm()(x))
        return x + nn.Dense(c)(nn.gelu(h))


class SpatialTransformer(nn.Module):
    """x [B, H, W, C], context [B, K, E], context_mask bool [B, K] -> [B, H, W, C]: GroupNorm,
    a linear projection in, `depth` transformer layers over the H*W positions, a projection out
    initialised to zero (the block starts as the identity), residual."""
    heads: int
    num_groups: int
    depth: int = 1
    norm_eps: float = 1e-6

    @nn.compact
    def __call__(self, x, context, context_mask):
        b, h, w, c = x.shape
        y = nn.GroupNorm(self.num_groups, epsilon=self.norm_eps)(x).reshape(b, h * w, c)
        y = nn.Dense(c, name="proj_in")(y)
        for _ in range(self.depth):
            y = TransformerLayer(self.heads)(y, None, context, context_mask)
        y = nn.Dense(c, kernel_init=nn.initializers.zeros, name="proj_out")(y)
        return x + y.reshape(b, h, w, c)


class TextEncoder(nn.Module):
    """tokens int32 [B, L] (0: padding) -> (embeddings [B, L, width], mask bool [B, L]).
    Learned token and position embeddings, `depth` pre-norm transformer layers whose
    self-attention skips the padding, a final LayerNorm (a small CLIP-style text tower,
    trained with the denoiser)."""
    vocab_size: int
    max_tokens: int
    width: int = 64
    depth: int = 2
    heads: int = 4

    @nn.compact
    def __call__(self, tokens):
        mask = tokens != 0
        positions = self.param("positions", nn.initializers.normal(0.02),
                               (self.max_tokens, self.width))
        x = nn.Embed(self.vocab_size, self.width, name="token_embedding")(tokens)
        x = x + positions[None, :tokens.shape[1]].astype(x.dtype)
        for _ in range(self.depth):
            x = TransformerLayer(self.heads)(x, mask)
        return nn.LayerNorm()(x), mask
