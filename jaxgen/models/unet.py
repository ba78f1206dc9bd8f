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
from jaxgen.models.transformer import SpatialTransformer, TextEncoder


class ResBlock(nn.Module):
    """x [B, H, W, C], emb [B, E] -> [B, H, W, features]."""
    features: int
    dropout: float
    num_groups: int
    norm_eps: float = 1e-6

    @nn.compact
    def __call__(self, x, emb, train: bool):
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=self.norm_eps)(x))
        h = nn.Conv(self.features, (3, 3))(h)
        h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=self.norm_eps)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = nn.Conv(self.features, (3, 3))(h)
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Self-attention over the H*W positions, residual: [B, H, W, C] -> same. head_dim: the
    width of each head (0: one head of all C channels, as DDPM)."""
    num_groups: int
    norm_eps: float = 1e-6
    head_dim: int = 0

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        d = self.head_dim or c
        y = nn.GroupNorm(self.num_groups, epsilon=self.norm_eps)(x).reshape(b, h * w, c)
        q, k, v = (nn.Dense(c, name=name)(y) for name in ("query", "key", "value"))
        if d == c:
            # The softmax in float32 whatever the compute dtype (mixed precision).
            logits = jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.float32) / math.sqrt(c)
            weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
            mixed = jnp.einsum("bqk,bkc->bqc", weights, v)
        else:  # [B, HW, C] -> [B, HW, heads, d]
            q, k, v = (a.reshape(b, h * w, c // d, d) for a in (q, k, v))
            logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) / math.sqrt(d)
            weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
            mixed = jnp.einsum("bnqk,bknd->bqnd", weights, v).reshape(b, h * w, c)
        out = nn.Dense(c, name="out")(mixed)
        return x + out.reshape(b, h, w, c)


class UNet(nn.Module):
    """x_t [B, H, W, C], t int [B] (labels int [B] in 0..num_classes, where num_classes is
    the null label of classifier-free guidance) -> [B, H, W, out_channels].

    channels: width of the first stage; channel_mults: one multiplier per resolution;
    attention_resolutions: side lengths (in pixels) that get self-attention.
    The remaining fields are the variants of diffusers' UNet2DModel (`jaxgen.pretrained`):
    norm_eps of every GroupNorm; downsample_padding "same" (XLA's: (0, 1) on even sides,
    diffusers' downsample_padding=0) or "symmetric" (1 on each side, diffusers' default);
    the timestep sinusoids' order and frequency shift (`timestep_embedding`); head_dim of the
    attention heads (0: one head); mid_attention: self-attention between the two middle
    blocks; null_label: the label table has a row num_classes for the null label of
    classifier-free guidance.

    Text conditioning (`TextConditionedUNet`): embedding [B, 4 * channels] is added to the
    timestep embedding; given a context [B, K, E] and its mask bool [B, K], a spatial
    transformer (self-attention, cross-attention to the context,
    feed-forward; `transformer.SpatialTransformer`) follows the residual block at the side
    lengths in transformer_resolutions, including the middle when its side is listed.
    """
    out_channels: int
    channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_classes: int = 0
    num_groups: int = 32
    norm_eps: float = 1e-6
    downsample_padding: str = "same"
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0
    head_dim: int = 0
    mid_attention: bool = True
    null_label: bool = True
    transformer_resolutions: tuple[int, ...] = ()
    transformer_heads: int = 4
    transformer_depth: int = 1

    @nn.compact
    def __call__(self, x, t, labels=None, train: bool = False, context=None,
                 context_mask=None, embedding=None):
        chex.assert_rank(x, 4)
        chex.assert_shape(t, (x.shape[0],))
        emb_dim = 4 * self.channels
        emb = timestep_embedding(t, self.channels, flip_sin_to_cos=self.flip_sin_to_cos,
                                 freq_shift=self.freq_shift).astype(x.dtype)
        emb = nn.Dense(emb_dim)(nn.silu(nn.Dense(emb_dim)(emb)))
        if self.num_classes:
            chex.assert_shape(labels, (x.shape[0],))
            emb = emb + nn.Embed(self.num_classes + int(self.null_label), emb_dim,
                                 name="label_embedding")(labels)
        if embedding is not None:  # [B, emb_dim]: a pooled prompt (TextConditionedUNet)
            emb = emb + embedding
        norm = dict(num_groups=self.num_groups, norm_eps=self.norm_eps)
        down_padding = "SAME" if self.downsample_padding == "same" else ((1, 1), (1, 1))

        def res_block(h, features):
            return ResBlock(features, self.dropout, **norm)(h, emb, train)

        def attention(h):
            return AttentionBlock(**norm, head_dim=self.head_dim)(h)

        def transformer(h):
            if context is None or h.shape[1] not in self.transformer_resolutions:
                return h
            return SpatialTransformer(self.transformer_heads, self.num_groups,
                                      self.transformer_depth, self.norm_eps)(
                h, context, context_mask)

        def block(h, features):
            h = res_block(h, features)
            if h.shape[1] in self.attention_resolutions:
                h = attention(h)
            return transformer(h)

        h = nn.Conv(self.channels, (3, 3))(x)
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = block(h, self.channels * mult)
                skips.append(h)
            if level != len(self.channel_mults) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=2, padding=down_padding)(h)
                skips.append(h)

        h = res_block(h, h.shape[-1])
        if self.mid_attention:
            h = attention(h)
        h = transformer(h)
        h = res_block(h, h.shape[-1])

        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = block(jnp.concatenate([h, skips.pop()], axis=-1), self.channels * mult)
            if level != 0:
                skip_shape = skips[-1].shape
                h = upsample_nearest(h)[:, :skip_shape[1], :skip_shape[2]]
                h = nn.Conv(h.shape[-1], (3, 3))(h)
        assert not skips
        h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=self.norm_eps)(h))
        # Zero-initialised output layer: the untrained network predicts 0 (Ho et al. 2020).
        return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)


class TextConditionedUNet(nn.Module):
    """x_t [B, H, W, C], t int [B], condition {"tokens": int32 [B, L] (0: padding), "label":
    int [B] for a class-conditional unet} -> the unet's output: the prompt's token embeddings
    (`TextEncoder`, trained with the denoiser) are the context of the unet's spatial
    transformers; with pooled, their mean over the prompt's tokens also joins the timestep
    embedding (Imagen's pooled text embedding, Saharia et al. 2022, sec. 2.1), a global path
    for global attributes such as brightness."""
    unet: UNet
    text: TextEncoder | None  # None: the condition carries a frozen encoder's "context"
    pooled: bool = True

    @nn.compact
    def __call__(self, x, t, condition, train: bool = False):
        chex.assert_shape(condition["tokens"], (x.shape[0], None))
        if self.text is None:
            context, mask = condition["context"]
        else:
            context, mask = self.text(condition["tokens"])
        embedding = None
        if self.pooled:
            weights = mask.astype(context.dtype)[..., None]
            mean = jnp.sum(context * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
            embedding = nn.Dense(4 * self.unet.channels, name="pooled_text")(mean)
        return self.unet(x, t, condition.get("label"), train, context.astype(x.dtype), mask,
                         None if embedding is None else embedding.astype(x.dtype))
