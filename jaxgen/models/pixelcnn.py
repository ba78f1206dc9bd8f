"""PixelCNN++ (Salimans et al. 2017): two causal convolutional streams over the image.

The u stream sees only the rows above a pixel; the ul stream the rows above and the pixels to
its left. Both are built from shifted convolutions, padded so that an output never reaches
below (or, for ul, right of) its position, then shifted by one row (column) at the input so that
it never sees its own pixel either:

    u[r, c]  depends on x[r', c'] with r' < r
    ul[r, c] depends on x[r', c'] with r' < r, or r' = r and c' < c

Gated residual blocks (eq. 4 of van den Oord et al. 2016, concat-ELU, dropout) at
`num_resolutions` resolutions, stride-2 shifted convolutions down, and up nearest-neighbour
upsampling followed by a shifted convolution (the paper uses transposed convolutions; ~20x
slower on XLA:CPU). Nearest upsampling keeps both invariants: a coarse position (i, j) sees only
what fine position (2i, 2j) may, and every fine position it is copied to may see at least that.
Skips from the first half to the second as in the paper. Optional class conditioning: a learned
bias per class in every block (the paper's conditional CIFAR-10 model).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.layers import upsample_nearest


def down_shift(x: jax.Array) -> jax.Array:
    """[B, H, W, C] moved one row down (zeros in the first row)."""
    return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def right_shift(x: jax.Array) -> jax.Array:
    """[B, H, W, C] moved one column right (zeros in the first column)."""
    return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def concat_elu(x: jax.Array) -> jax.Array:
    """ELU of x and -x side by side: [..., C] -> [..., 2C] (Salimans et al. 2017)."""
    return nn.elu(jnp.concatenate([x, -x], axis=-1))


class DownShiftedConv(nn.Module):
    """Output (r, c) sees input rows r - kh + 1 .. r and columns c - (kw-1)/2 .. c + (kw-1)/2:
    nothing below. Stride 2 halves the size (rounding up)."""
    features: int
    kernel: tuple[int, int] = (2, 3)
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel
        x = jnp.pad(x, ((0, 0), (kh - 1, 0), ((kw - 1) // 2, (kw - 1) // 2), (0, 0)))
        return nn.Conv(self.features, self.kernel, strides=self.strides, padding="VALID")(x)


class DownRightShiftedConv(nn.Module):
    """Output (r, c) sees input rows r - kh + 1 .. r and columns c - kw + 1 .. c: nothing below
    and nothing to the right."""
    features: int
    kernel: tuple[int, int] = (2, 2)
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel
        x = jnp.pad(x, ((0, 0), (kh - 1, 0), (kw - 1, 0), (0, 0)))
        return nn.Conv(self.features, self.kernel, strides=self.strides, padding="VALID")(x)


class GatedResnet(nn.Module):
    """x + a * sigmoid(b), (a, b) from two shifted convolutions of concat_elu(x), plus a 1x1
    projection of the side input `skip` (another stream at the same position) and a class bias.
    x [B, H, W, F] -> same."""
    shifted: type[nn.Module]
    dropout: float
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, skip=None, labels=None, train: bool = False):
        features = x.shape[-1]
        h = self.shifted(features)(concat_elu(x))
        if skip is not None:
            h = h + nn.Dense(features, name="skip")(concat_elu(skip))
        h = nn.Dropout(self.dropout)(concat_elu(h), deterministic=not train)
        h = self.shifted(2 * features)(h)
        if self.num_classes:
            h = h + nn.Embed(self.num_classes, 2 * features, name="label_bias")(labels)[
                :, None, None, :]
        a, b = jnp.split(h, 2, axis=-1)
        return x + a * nn.sigmoid(b)


class PixelCNNPP(nn.Module):
    """x [B, H, W, C] in [-1, 1] (labels int [B] if num_classes) -> the logistic mixture's
    parameters at every pixel [B, H, W, out_channels], each depending only on the pixels
    before it in raster order."""
    out_channels: int
    filters: int = 160
    num_resnet: int = 5
    num_resolutions: int = 3
    dropout: float = 0.5
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, labels=None, train: bool = False):
        chex.assert_rank(x, 4)
        f = self.filters

        def u_block(h, skip=None):
            return GatedResnet(DownShiftedConv, self.dropout, self.num_classes)(
                h, skip, labels, train)

        def ul_block(h, skip):
            return GatedResnet(DownRightShiftedConv, self.dropout, self.num_classes)(
                h, skip, labels, train)

        # A channel of ones: the network tells the image's border from zero padding.
        x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
        u_list = [down_shift(DownShiftedConv(f, (2, 3))(x))]
        ul_list = [down_shift(DownShiftedConv(f, (1, 3))(x))
                   + right_shift(DownRightShiftedConv(f, (2, 1))(x))]
        for level in range(self.num_resolutions):
            if level:
                u_list.append(DownShiftedConv(f, strides=2)(u_list[-1]))
                ul_list.append(DownRightShiftedConv(f, strides=2)(ul_list[-1]))
            for _ in range(self.num_resnet):
                u_list.append(u_block(u_list[-1]))
                ul_list.append(ul_block(ul_list[-1], u_list[-1]))

        u, ul = u_list.pop(), ul_list.pop()
        for level in reversed(range(self.num_resolutions)):
            if level != self.num_resolutions - 1:
                height, width = u_list[-1].shape[1:3]
                u = DownShiftedConv(f)(upsample_nearest(u)[:, :height, :width])
                ul = DownRightShiftedConv(f)(upsample_nearest(ul)[:, :height, :width])
            last = level == self.num_resolutions - 1
            for _ in range(self.num_resnet + (0 if last else 1)):
                u = u_block(u, u_list.pop())
                ul = ul_block(ul, jnp.concatenate([u, ul_list.pop()], axis=-1))
        assert not u_list and not ul_list
        return nn.Dense(self.out_channels, name="mixture")(nn.elu(ul))
