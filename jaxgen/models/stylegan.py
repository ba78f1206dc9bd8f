"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN"; the mapping network, styles and noise of Karras et al. 2019).

Generator: z -> mapping network (normalised z, `depth` fully connected layers at a reduced
learning rate) -> w; a learned constant 4x4 input; at each resolution two 3x3 convolutions
modulated by a style (an affine map of w) and demodulated (the paper's eq. 1-3, in place of
AdaIN), each followed by per-pixel noise of learned strength, bias and leaky ReLU; an RGB
output at every resolution, summed over upsampled resolutions (the "skip" generator).
Discriminator: residual blocks, minibatch standard deviation, optionally a class projection.

Differences from the paper's code, and why:
- Resolution changes are a resize (bilinear or nearest) and a 3x3 convolution, not a
  transposed convolution with FIR filtering: XLA:CPU runs transposed convolutions ~20x slower
  than PyTorch. The discriminator downsamples by 2x2 average pooling.
- Modulation scales the activations, not the weights: conv(x * s, W) * d equals conv(x, W')
  with W' = s W d (the official code's non-fused path), and is a plain batched convolution.
- Every layer uses the equalised learning rate of Karras et al. 2018: weights stored N(0, 1)
  (N(0, 1/lr_multiplier) in the mapping network) and scaled by lr_multiplier/sqrt(fan_in) at
  run time, so Adam's steps are the same relative size in every layer.

Shapes: z [B, latent_dim]; w [B, w_dim]; ws [B, num_ws, w_dim] (one w per style input, layers
in order from 4x4 up); images [B, R, R, C], about [-1, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.dcgan import pixel_norm
from jaxgen.models.layers import upsample_nearest

ACTIVATION_GAIN = math.sqrt(2.0)  # keeps the activations' variance through leaky ReLU(0.2)
UPSAMPLING = ("bilinear", "nearest")


def activation(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2) * ACTIVATION_GAIN


def upsample(x: jax.Array, method: str) -> jax.Array:
    """x [B, H, W, C] -> [B, 2H, 2W, C]."""
    if method == "nearest":
        return upsample_nearest(x)
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


def downsample(x: jax.Array) -> jax.Array:
    """2x2 average pooling: [B, H, W, C] -> [B, H/2, W/2, C]."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [B, H, W, I], kernel [k, k, I, O] -> [B, H, W, O] ('SAME' padding)."""
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class EqualDense(nn.Module):
    """A fully connected layer with the equalised learning rate: [..., I] -> [..., features]."""
    features: int
    bias_init: float = 0.0
    lr_multiplier: float = 1.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lr_multiplier),
                            (x.shape[-1], self.features))
        y = x @ (kernel * (self.lr_multiplier / math.sqrt(x.shape[-1]))).astype(x.dtype)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.constant(self.bias_init / self.lr_multiplier),
                              (self.features,))
            y = y + (bias * self.lr_multiplier).astype(x.dtype)
        return y


class EqualConv(nn.Module):
    """A k x k convolution with the equalised learning rate: [B, H, W, I] -> [B, H, W, O]."""
    features: int
    kernel_size: int = 3
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.normal(1.0),
                            (k, k, x.shape[-1], self.features))
        y = conv2d(x, kernel / math.sqrt(k * k * x.shape[-1]))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
        return y


class ModulatedConv(nn.Module):
    """A k x k convolution modulated by the style s = affine(w) (bias initialised to 1), and
    demodulated: out_j = sum_i,k s_i W_ijk x_i / sqrt(sum_i,k (s_i W_ijk)^2 + 1e-8) (eq. 1-3).
    x [B, H, W, I], w [B, w_dim] -> [B, H, W, features]."""
    features: int
    kernel_size: int = 3
    demodulate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        chex.assert_rank([x, w], [4, 2])
        k, channels = self.kernel_size, x.shape[-1]
        style = EqualDense(channels, bias_init=1.0, name="affine")(w)  # [B, I]
        kernel = self.param("kernel", nn.initializers.normal(1.0),
                            (k, k, channels, self.features))
        weight = kernel / math.sqrt(k * k * channels)  # [k, k, I, O]
        y = conv2d(x * style[:, None, None, :].astype(x.dtype), weight)
        if self.demodulate:
            # sigma_j^2 = sum_i s_i^2 sum_k W_ijk^2, in float32 whatever the compute dtype.
            sigma2 = jnp.square(style.astype(jnp.float32)) @ jnp.sum(
                jnp.square(weight.astype(jnp.float32)), axis=(0, 1))  # [B, O]
            y = y * jax.lax.rsqrt(sigma2 + 1e-8)[:, None, None, :].astype(y.dtype)
        return y


class SynthesisLayer(nn.Module):
    """(upsample,) modulated 3x3 conv, noise * learned strength (starting at 0), bias,
    activation. x [B, H, W, I] -> [B, H', W', features]; noise_rng None: no noise."""
    features: int
    up: bool = False
    upsampling: str = "bilinear"

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_rng: jax.Array | None) -> jax.Array:
        if self.up:
            x = upsample(x, self.upsampling)
        y = ModulatedConv(self.features)(x, w)
        strength = self.param("noise_strength", nn.initializers.zeros, ())
        if noise_rng is not None:
            noise = jax.random.normal(noise_rng, y.shape[:3] + (1,), jnp.float32)
            y = y + (noise * strength).astype(y.dtype)
        y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return activation(y)


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to the image channels, without demodulation, plus a bias:
    [B, H, W, I] -> [B, H, W, channels]."""
    channels: int

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        y = ModulatedConv(self.channels, kernel_size=1, demodulate=False)(x, w)
        return y + self.param("bias", nn.initializers.zeros, (self.channels,)).astype(y.dtype)


def num_style_inputs(num_resolutions: int) -> int:
    """Style inputs of a generator with resolutions 4, 8, ..., 4 * 2^(n-1): one conv and one
    RGB output at 4x4, two convs and one RGB output above, the RGB output sharing the next
    resolution's first w (the paper's count: 2 log2(R) - 2)."""
    return 2 * num_resolutions


class MappingNetwork(nn.Module):
    """z [B, latent_dim] (labels int [B] if num_classes) -> w [B, w_dim]. z (and the label
    embedding, concatenated) normalised to unit second moment, then `depth` layers at
    lr_multiplier (0.01 in the paper: w moves slowly)."""
    w_dim: int = 512
    depth: int = 8
    num_classes: int = 0
    lr_multiplier: float = 0.01

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        chex.assert_rank(z, 2)
        x = pixel_norm(z)
        if self.num_classes:
            chex.assert_shape(labels, (z.shape[0],))
            embedded = EqualDense(self.w_dim, name="embed")(
                jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype))
            x = jnp.concatenate([x, pixel_norm(embedded)], axis=-1)
        for i in range(self.depth):
            x = activation(EqualDense(self.w_dim, lr_multiplier=self.lr_multiplier,
                                      name=f"dense_{i}")(x))
        return x


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> images [B, R, R, channels]; `widths` per resolution from 4x4
    up (R = 4 * 2^(len(widths) - 1)). noise_rng: each layer's noise from fold_in(noise_rng,
    layer); None: no noise."""
    widths: Sequence[int]
    channels: int = 3
    upsampling: str = "bilinear"

    @property
    def num_ws(self) -> int:
        return num_style_inputs(len(self.widths))

    @nn.compact
    def __call__(self, ws: jax.Array, noise_rng: jax.Array | None = None) -> jax.Array:
        chex.assert_shape(ws, (None, self.num_ws, None))

        def noise(layer):
            return None if noise_rng is None else jax.random.fold_in(noise_rng, layer)

        const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.widths[0]))
        x = jnp.broadcast_to(const.astype(ws.dtype), (ws.shape[0],) + const.shape)
        x = SynthesisLayer(self.widths[0], name="conv_4")(x, ws[:, 0], noise(0))
        image = ToRGB(self.channels, name="rgb_4")(x, ws[:, 1])
        for i, width in enumerate(self.widths[1:], start=1):
            size = 4 * 2 ** i
            x = SynthesisLayer(width, up=True, upsampling=self.upsampling,
                               name=f"conv0_{size}")(x, ws[:, 2 * i - 1], noise(2 * i - 1))
            x = SynthesisLayer(width, name=f"conv1_{size}")(x, ws[:, 2 * i], noise(2 * i))
            image = upsample(image, self.upsampling) + ToRGB(
                self.channels, name=f"rgb_{size}")(x, ws[:, 2 * i + 1])
        return image


class StyleGenerator(nn.Module):
    """The mapping and synthesis networks. Methods (module.apply(..., method=...)):
    `map` z -> w, `synthesize` ws -> images; calling it maps and synthesises with one w for
    every layer (init)."""
    image_shape: tuple[int, int, int]
    widths: Sequence[int]
    w_dim: int = 512
    mapping_depth: int = 8
    num_classes: int = 0
    mapping_lr_multiplier: float = 0.01
    upsampling: str = "bilinear"

    def setup(self):
        size = 4 * 2 ** (len(self.widths) - 1)
        if self.image_shape[:2] != (size, size):
            raise ValueError(f"generator widths {tuple(self.widths)} make {size}x{size} images, "
                             f"not {self.image_shape[0]}x{self.image_shape[1]}")
        self.mapping = MappingNetwork(self.w_dim, self.mapping_depth, self.num_classes,
                                      self.mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(tuple(self.widths), self.image_shape[2],
                                          self.upsampling)

    def map(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self.mapping(z, labels)

    def synthesize(self, ws: jax.Array, noise_rng: jax.Array | None = None) -> jax.Array:
        return self.synthesis(ws, noise_rng)

    def __call__(self, z: jax.Array, labels: jax.Array | None = None,
                 noise_rng: jax.Array | None = None) -> jax.Array:
        w = self.map(z, labels)
        num_ws = num_style_inputs(len(self.widths))
        return self.synthesize(jnp.repeat(w[:, None], num_ws, axis=1), noise_rng)


def minibatch_stddev(x: jax.Array, group_size: int = 4, features: int = 1) -> jax.Array:
    """x [N, H, W, C] -> [N, H, W, C + features]: the standard deviation of each feature over
    a group of examples, averaged over the pixels and channels of each of `features` channel
    groups, appended as constant maps (Karras et al. 2018, sec. 3). Example i is in group
    i mod (N / G), as in the official code; G is the largest divisor of N up to group_size."""
    n, h, w, c = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, features, c // features)
    y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [n/G, H, W, F, C/F]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n/G, F]
    y = jnp.tile(y, (g, 1))  # row i is group i mod n/G
    y = jnp.broadcast_to(y[:, None, None, :], (n, h, w, features)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


class ResidualBlock(nn.Module):
    """conv 3x3, downsample, conv 3x3, with a 1x1 skip of the downsampled input, summed at
    1/sqrt(2) each: [B, H, W, I] -> [B, H/2, W/2, features]."""
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        skip = EqualConv(self.features, 1, use_bias=False, name="skip")(downsample(x))
        x = activation(EqualConv(x.shape[-1], name="conv0")(x))
        x = activation(EqualConv(self.features, name="conv1")(downsample(x)))
        return (x + skip) * (1.0 / math.sqrt(2.0))


class StyleDiscriminator(nn.Module):
    """x [B, R, R, C] (labels int [B] if num_classes) -> logits [B].

    widths: per resolution from R down to 4x4. From-RGB 1x1 conv, residual blocks down to
    4x4, minibatch standard deviation, a 3x3 conv and two dense layers. A conditional
    discriminator projects its last features on a class embedding, scaled by
    1/sqrt(dim) (Miyato & Koyama 2018, as in StyleGAN2-ADA)."""
    widths: Sequence[int]
    num_classes: int = 0
    mbstd_group: int = 4
    mbstd_features: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        chex.assert_rank(x, 4)
        size = 4 * 2 ** (len(self.widths) - 1)
        if x.shape[1:3] != (size, size):
            raise ValueError(f"discriminator widths {tuple(self.widths)} take {size}x{size} "
                             f"images, not {x.shape[1]}x{x.shape[2]}")
        x = activation(EqualConv(self.widths[0], 1, name="from_rgb")(x))
        for width in self.widths[1:]:
            x = ResidualBlock(width)(x)
        x = minibatch_stddev(x, self.mbstd_group, self.mbstd_features)
        x = activation(EqualConv(self.widths[-1], name="conv_4")(x))
        x = activation(EqualDense(self.widths[-1], name="dense")(x.reshape(x.shape[0], -1)))
        if not self.num_classes:
            return EqualDense(1, name="out")(x)[:, 0]
        chex.assert_shape(labels, (x.shape[0],))
        dim = self.widths[-1]
        projected = EqualDense(dim, name="out")(x)
        embedded = EqualDense(dim, name="embed")(
            jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype))
        return jnp.sum(projected * embedded, axis=-1) * (1.0 / math.sqrt(dim))
