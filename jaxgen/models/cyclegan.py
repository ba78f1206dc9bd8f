"""CycleGAN's networks (Zhu et al. 2017, appendix 7.2): a ResNet generator (Johnson et al.
2016) and a PatchGAN discriminator (Isola et al. 2017), sized by their widths.

Generator: c7s1-w, d(2w), d(4w), R(4w) x blocks, u(2w), u(w), c7s1-C, tanh, with reflection
padding and instance normalisation (no affine parameters, as the reference code). The
upsampling steps u are nearest-neighbour resizing + a 3x3 convolution instead of the paper's
transposed convolutions: ~20x faster on XLA:CPU and free of checkerboard artefacts (Odena et
al. 2016). Instance normalisation keeps no running statistics, so a step is a pure function
of its batch and identical on any number of devices.

PatchGAN: 4x4 convolutions C(w) C(2w) ... with stride 2, the last width at stride 1, then a
1-channel 4x4 convolution: one score per overlapping patch. The paper's 70x70 discriminator
is widths (64, 128, 256, 512) on 256x256 images; `receptive_field` gives a scaled-down one's.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.layers import upsample_nearest


def reflect_pad(x: jax.Array, width: int) -> jax.Array:
    """[B, H, W, C] -> [B, H + 2 width, W + 2 width, C], mirrored at the borders."""
    return jnp.pad(x, ((0, 0), (width, width), (width, width), (0, 0)), mode="reflect")


def instance_norm(x: jax.Array) -> jax.Array:
    """Each image's channels to zero mean, unit variance over H, W (Ulyanov et al. 2016)."""
    return nn.InstanceNorm(use_scale=False, use_bias=False, epsilon=1e-5)(x)


def conv(width: int, kernel: int, stride: int = 1, padding="VALID", normalised: bool = True):
    """A convolution; none before instance normalisation has a bias. (The reference code
    gives them one, but the normalisation subtracts it again: its gradient is rounding noise,
    which Adam scales up to full-size steps, so such biases drift with the summation order
    and runs on different numbers of devices part.)"""
    return nn.Conv(width, (kernel, kernel), strides=(stride, stride), padding=padding,
                   use_bias=not normalised)


class ResidualBlock(nn.Module):
    """x + IN(conv(relu(IN(conv(x))))), 3x3 convolutions on reflection-padded input."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        y = nn.relu(instance_norm(conv(width, 3)(reflect_pad(x, 1))))
        y = instance_norm(conv(width, 3)(reflect_pad(y, 1)))
        return x + y


class ResnetGenerator(nn.Module):
    """images [B, H, W, C] in [-1, 1] -> translated images [B, H, W, channels] in [-1, 1];
    H and W divisible by 2 ** downsamplings."""
    channels: int
    width: int = 64
    blocks: int = 9
    downsamplings: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_rank(x, 4)
        factor = 2 ** self.downsamplings
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"images {x.shape[1]}x{x.shape[2]} are not divisible by "
                             f"2**{self.downsamplings} (model.downsamplings)")
        same = ((1, 1), (1, 1))
        h = nn.relu(instance_norm(conv(self.width, 7)(reflect_pad(x, 3))))
        for k in range(1, self.downsamplings + 1):
            h = nn.relu(instance_norm(conv(self.width * 2 ** k, 3, 2, same)(h)))
        for _ in range(self.blocks):
            h = ResidualBlock()(h)
        for k in reversed(range(self.downsamplings)):
            h = nn.relu(instance_norm(conv(self.width * 2 ** k, 3, 1, same)(
                upsample_nearest(h))))
        return jnp.tanh(conv(self.channels, 7, normalised=False)(reflect_pad(h, 3)))


class PatchDiscriminator(nn.Module):
    """images [B, H, W, C] -> scores [B, h, w], one per patch (least-squares targets 1/0,
    or logits of the non-saturating loss). No normalisation on the first layer."""
    widths: Sequence[int] = (64, 128, 256, 512)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_rank(x, 4)
        pad = ((1, 1), (1, 1))
        for k, width in enumerate(self.widths):
            stride = 1 if k == len(self.widths) - 1 else 2
            x = conv(width, 4, stride, pad, normalised=k > 0)(x)
            x = nn.leaky_relu(x if k == 0 else instance_norm(x), 0.2)
        return conv(1, 4, 1, pad, normalised=False)(x)[..., 0]


def receptive_field(num_widths: int) -> int:
    """The patch a PatchDiscriminator of num_widths widths scores: 70 for the paper's four."""
    field = 4  # the output convolution
    for k in reversed(range(num_widths)):
        stride = 1 if k == num_widths - 1 else 2
        field = (field - 1) * stride + 4
    return field
