"""PixelCNN++ (Salimans et al. 2017): an autoregressive model whose likelihood is exact.

log p(x) = sum over pixels in raster order of log p(x_i | x_<i), each factor a discretised
mixture of logistics over the data's grid of levels (`losses.logistic_mixture`), its parameters
from one pass of the causal network (`models.pixelcnn`). Training minimises the exact negative
log-likelihood in bits/dim; evaluation reports it in nats and bits/dim. Sampling draws pixel after
pixel in one compiled program. The reference sampler runs the whole network once per pixel
(H x W passes per image); the default computes the same function with less work: the u stream
once per row, and both streams only on the rows drawn so far (`sample_fast`).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import FRACTION, POSITIVE, Key
from jaxgen.core.contract import FamilyBase, bits_per_dim, new_state
from jaxgen.data.sources import DataSpec
from jaxgen.losses import logistic_mixture
from jaxgen.models.pixelcnn import PixelCNNPP
from jaxgen.core.state import TrainState, apply_gradients, make_optimizer

KEYS = {
    "data.binarize": Key(False, "the mixture is a distribution over the grey levels"),
    "data.dequantize": Key(False, "the likelihood is discrete: pixels stay on their grid"),
    "train.learning_rate": Key(1e-3, "Adam's learning rate (the paper's 0.001)",
                               check=POSITIVE),
    "train.ema_decay": Key(0.9995, "Polyak averaging of the parameters (the paper's 0.9995), "
                                   "used for evaluation and sampling", check=FRACTION),
    "model.filters": Key(160, "channels of both streams", check=POSITIVE),
    "model.num_resnet": Key(5, "gated residual blocks per resolution and pass",
                            check=POSITIVE),
    "model.num_resolutions": Key(3, "resolutions (stride-2 steps + 1)", check=POSITIVE),
    "model.num_mixtures": Key(10, "logistic components per pixel", check=POSITIVE),
    "model.dropout": Key(0.5, "dropout in the residual blocks", check=FRACTION),
    "model.conditional": Key(False, "a class bias in every residual block"),
    "sample.sampler": Key("fast", "fast: the u stream once per row, only the rows drawn so "
                                  "far (the same samples); reference: the whole network per "
                                  "pixel", choices=("fast", "reference")),
}

# The fast sampler crops the image below the row it draws in at most this many steps: each
# crop height is one more compiled copy of the network.
MAX_ROW_BANDS = 4


def default_config() -> ml_collections.ConfigDict:
    return config_lib.from_keys("pixelcnn", KEYS)


class PixelCNNFamily(FamilyBase):
    """Keys: `KEYS` (python -m jaxgen.keys pixelcnn). Images in [-1, 1] on the data's grid."""

    keys = KEYS
    value_range = "symmetric"

    def __init__(self, config: ml_collections.ConfigDict, data: DataSpec):
        config_lib.check_keys(config, self.keys)
        m = config.model
        if config.data.binarize or config.data.dequantize:
            raise ConfigError("pixelcnn models the raw pixel grid: set data.binarize=False "
                              "and data.dequantize=False")
        height, width, channels = data.image_shape
        if channels not in (1, 3):
            raise ConfigError(f"pixelcnn models grey or RGB images, not {channels} channels")
        if min(height, width) < 2 ** (m.num_resolutions - 1):
            raise ConfigError(f"model.num_resolutions={m.num_resolutions} halves {height}x"
                              f"{width} images below one pixel")
        self.config = config
        self.data = data
        self.num_mixtures = m.num_mixtures
        self.num_levels = data.max_value + 1
        self.num_classes = data.num_classes if m.conditional else 0
        self.num_dims = math.prod(data.image_shape)
        self.model = PixelCNNPP(logistic_mixture.num_outputs(channels, m.num_mixtures),
                                m.filters, m.num_resnet, m.num_resolutions, m.dropout,
                                self.num_classes)
        self.optimizer = make_optimizer(config.train)

    def apply(self, params, images, labels=None, train=False, rng=None):
        """The mixture's parameters at every pixel: [B, H, W, num_outputs]."""
        return self.run(self.model, {"params": params}, images, labels, train=train,
                        rngs={"dropout": rng} if train else None)

    def nll(self, params, batch, rng=None, train=False):
        """-log p(x) in nats, exact: [B]."""
        x = batch["image"]
        chex.assert_rank(x, 4)
        output = self.apply(params, x, self.labels(batch), train, rng)
        return -logistic_mixture.log_prob(x, output, self.num_levels, self.num_mixtures)

    # The contract.

    def init(self, rng, batch) -> TrainState:
        params = self.model.init(rng, batch["image"], self.labels(batch))["params"]
        return new_state(params, self.optimizer)

    def train_step(self, state: TrainState, batch, rng):
        def loss_fn(params):
            nll = self.nll(params, batch, rng, train=True)
            return jnp.mean(bits_per_dim(nll, self.num_dims)), nll

        (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = apply_gradients(state, grads, self.optimizer)
        return state, {"loss": loss, "nll": jnp.mean(nll), "grad_norm": optax.global_norm(grads)}

    def eval_step(self, state: TrainState, batch, rng):
        nll = self.nll(state.params_for_sampling(), batch)
        return {"nll": nll, "nll_bits_per_dim": bits_per_dim(nll, self.num_dims)}

    def likelihood_step(self, state: TrainState, batch, rng):
        """The exact NLL: eval_step is already the whole likelihood."""
        return self.eval_step(state, batch, rng)

    def sample(self, state: TrainState, rng, num: int, labels=None):
        """num images [num, H, W, C] in [-1, 1], drawn pixel by pixel in raster order (the
        channels of a pixel one after another inside the mixture), by `sample.sampler`."""
        if self.config.sample.sampler == "reference":
            return self.sample_reference(state, rng, num, labels)
        return self.sample_fast(state, rng, num, labels)

    def _draw_pixel(self, rng, output, x, row, column):
        """x with pixel (row, column) drawn from output [num, h, W, num_outputs]; the key of
        pixel i is fold_in(rng, i) in both samplers, so they draw the same images."""
        width, channels = x.shape[2], x.shape[3]
        at = jax.lax.dynamic_slice_in_dim(
            jax.lax.dynamic_slice_in_dim(output, row, 1, axis=1), column, 1, axis=2)
        pixel = logistic_mixture.sample(jax.random.fold_in(rng, row * width + column),
                                        at[:, 0, 0], channels, self.num_levels,
                                        self.num_mixtures)
        return jax.lax.dynamic_update_slice(x, pixel[:, None, None, :].astype(x.dtype),
                                            (0, row, column, 0))

    def sample_reference(self, state: TrainState, rng, num: int, labels=None):
        """The definition: one pass of the whole network per pixel, H x W passes per image."""
        labels = self.cycled_labels(num, labels)
        params = state.params_for_sampling()
        height, width, channels = self.data.image_shape

        def draw(position, x):
            row, column = position // width, position % width
            return self._draw_pixel(rng, self.apply(params, x, labels), x, row, column)

        x = jnp.zeros((num, height, width, channels), jnp.float32)
        return jax.lax.fori_loop(0, height * width, draw, x)

    def sample_fast(self, state: TrainState, rng, num: int, labels=None):
        """sample_reference's images for less work (equal outputs; tests/test_pixelcnn.py).
        Nothing at row r sees a row below it, so (1) the u stream, which sees only rows < r,
        runs once per row instead of once per pixel, and (2) while drawing rows top..bottom-1
        both streams run on the image cropped to its first `bottom` rows, in up to
        MAX_ROW_BANDS bands. On 28x28 (bands of 7 rows) the network runs on 17.5 rows on average
        instead of 28, and 3.6x fewer FLOPs in all."""
        labels = self.cycled_labels(num, labels)
        params = state.params_for_sampling()
        height, width, channels = self.data.image_shape
        band = -(-height // min(height, MAX_ROW_BANDS))

        def u_stream(x):
            return self.run(self.model, {"params": params}, x, labels, stream="u")

        def ul_output(x, u):
            return self.run(self.model, {"params": params}, x, labels, False, u, stream="ul")

        def draw_row(row, x):
            u = u_stream(x)
            return jax.lax.fori_loop(
                0, width, lambda column, x: self._draw_pixel(rng, ul_output(x, u), x, row,
                                                             column), x)

        x = jnp.zeros((num, height, width, channels), jnp.float32)
        for top in range(0, height, band):  # a static crop per band: one program per height
            bottom = min(top + band, height)
            drawn = jax.lax.fori_loop(top, bottom, draw_row, x[:, :bottom])
            x = x.at[:, :bottom].set(drawn)
        return x
