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
    before it in raster order.

    The u stream never reads the ul stream, so it can run alone: stream="u" returns the u
    values the ul stream consumes (a tuple, one per ul block), and stream="ul" with those
    values as `u_stream` finishes the pass. A sampler drawing row r computes the u stream once
    for the whole row (its values at row r see only rows < r) and the ul stream per pixel. Every
    output at row r depends on rows <= r only and all padding is above or to the left, so an
    image cropped below row r gives the same outputs at rows <= r.
    """
    out_channels: int
    filters: int = 160
    num_resnet: int = 5
    num_resolutions: int = 3
    dropout: float = 0.5
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, labels=None, train: bool = False, u_stream=None, stream: str = "both"):
        chex.assert_rank(x, 4)
        if stream not in ("both", "u", "ul") or (stream == "ul") != (u_stream is not None):
            raise ValueError(f"stream='{stream}' (both, u, or ul given u_stream)")
        f = self.filters

        def block(shifted):
            return GatedResnet(shifted, self.dropout, self.num_classes)

        # Every layer is built here, in one order, whichever stream runs: the order gives the
        # parameters their names (DownShiftedConv_0, GatedResnet_3, ...).
        u_first = DownShiftedConv(f, (2, 3))
        ul_first = (DownShiftedConv(f, (1, 3)), DownRightShiftedConv(f, (2, 1)))
        down = []  # per resolution: (u downsampling, ul downsampling, [(u block, ul block)])
        for level in range(self.num_resolutions):
            resample = ((DownShiftedConv(f, strides=2), DownRightShiftedConv(f, strides=2))
                        if level else (None, None))
            down.append((*resample, [(block(DownShiftedConv), block(DownRightShiftedConv))
                                     for _ in range(self.num_resnet)]))
        up = []  # per resolution, coarsest first: (u upsampling conv, ul upsampling conv, blocks)
        for level in reversed(range(self.num_resolutions)):
            last = level == self.num_resolutions - 1
            resample = (None, None) if last else (DownShiftedConv(f), DownRightShiftedConv(f))
            up.append((*resample, [(block(DownShiftedConv), block(DownRightShiftedConv))
                                   for _ in range(self.num_resnet + (0 if last else 1))]))
        mixture = nn.Dense(self.out_channels, name="mixture")

        # A channel of ones: the network tells the image's border from zero padding.
        x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
        if u_stream is None:
            u_stream = self._u_stream(x, labels, train, u_first, down, up)
            if stream == "u":
                return u_stream
        return mixture(nn.elu(self._ul_stream(x, labels, train, ul_first, down, up,
                                              iter(u_stream))))

    def _u_stream(self, x, labels, train, first, down, up) -> tuple:
        """The u value each ul block reads, in the order the ul blocks run."""
        seen = []
        u_list = [down_shift(first(x))]
        for downsample, _, blocks in down:
            if downsample is not None:
                u_list.append(downsample(u_list[-1]))
            for u_block, _ in blocks:
                u_list.append(u_block(u_list[-1], None, labels, train))
                seen.append(u_list[-1])
        u = u_list.pop()
        for upsample_conv, _, blocks in up:
            if upsample_conv is not None:
                height, width = u_list[-1].shape[1:3]
                u = upsample_conv(upsample_nearest(u)[:, :height, :width])
            for u_block, _ in blocks:
                u = u_block(u, u_list.pop(), labels, train)
                seen.append(u)
        assert not u_list
        return tuple(seen)

    def _ul_stream(self, x, labels, train, first, down, up, u_stream):
        """The last ul features [B, H, W, filters], given the u stream's values in order."""
        vertical, horizontal = first
        ul_list = [down_shift(vertical(x)) + right_shift(horizontal(x))]
        for _, downsample, blocks in down:
            if downsample is not None:
                ul_list.append(downsample(ul_list[-1]))
            for _, ul_block in blocks:
                ul_list.append(ul_block(ul_list[-1], next(u_stream), labels, train))
        ul = ul_list.pop()
        for _, upsample_conv, blocks in up:
            if upsample_conv is not None:
                height, width = ul_list[-1].shape[1:3]
                ul = upsample_conv(upsample_nearest(ul)[:, :height, :width])
            for _, ul_block in blocks:
                ul = ul_block(ul, jnp.concatenate([next(u_stream), ul_list.pop()], axis=-1),
                              labels, train)
        assert not ul_list and next(u_stream, None) is None
        return ul
