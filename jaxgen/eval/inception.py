"""Inception-v3 pool3 features (2048-D) from a local weights file, for FID as papers report it.

The network is the FID variant of Inception-v3 (Heusel et al. 2017, as ported by
pytorch-fid: average pools that exclude padding, a max pool in the last block). jaxgen
never downloads weights: `eval.inception_weights` names a local `.npz` holding the
PyTorch state dict of that network under its own names, made on a machine that has it:

    import numpy, torch
    from pytorch_fid.inception import fid_inception_v3
    state = fid_inception_v3().state_dict()
    numpy.savez("pt_inception.npz", **{k: v.numpy() for k, v in state.items()})
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core import parallel
from jaxgen.core.config import ConfigError
from jaxgen.eval import extractor as extractor_lib
from jaxgen.eval.extractor import Extractor

INPUT_SIZE = 299


class BasicConv(nn.Module):
    """Conv (no bias) -> BatchNorm (running statistics) -> ReLU, PyTorch padding."""
    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, self.kernel, strides=self.stride, use_bias=False,
                    padding=[(p, p) for p in self.padding], name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool(x):
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x):
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class InceptionE(nn.Module):
    max_pool_branch: bool  # the FID network's last block pools with max, not average

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
        bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)],
                             -1)
        pooled = (nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.max_pool_branch
                  else _avg_pool(x))
        bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], -1)


def resize_like_pytorch_fid(images: jax.Array) -> jax.Array:
    """images [B, H, W, C] -> [B, 299, 299, C] as pytorch-fid resizes them:
    `F.interpolate(mode="bilinear", align_corners=False)`, which samples at half-pixel
    centres, clamps at the borders and never antialiases. jax.image.resize antialiases when
    it shrinks by default, which changed the features of inputs larger than 299 px by more
    than their own size (issue 13); enlarged inputs (MNIST, CIFAR) were not affected."""
    return jax.image.resize(images, (images.shape[0], INPUT_SIZE, INPUT_SIZE, images.shape[-1]),
                            "bilinear", antialias=False)


class FIDInceptionV3(nn.Module):
    """images [B, H, W, 1 or 3] in [0, 1] -> pool3 features [B, 2048]."""

    @nn.compact
    def __call__(self, images):
        x = images if images.shape[-1] == 3 else jnp.repeat(images, 3, axis=-1)
        x = resize_like_pytorch_fid(x)
        x = 2.0 * x - 1.0
        x = BasicConv(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool(x)
        x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                               ("Mixed_6e", 192)):
            x = InceptionC(channels, name=name)(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(False, name="Mixed_7b")(x)
        x = InceptionE(True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


# flax leaf -> (PyTorch suffix, how to turn the PyTorch array into the flax one)
_LEAVES = {
    ("params", "kernel"): ("weight", lambda w: np.transpose(w, (2, 3, 1, 0))),
    ("params", "scale"): ("weight", lambda w: w),
    ("params", "bias"): ("bias", lambda w: w),
    ("batch_stats", "mean"): ("running_mean", lambda w: w),
    ("batch_stats", "var"): ("running_var", lambda w: w),
}


def torch_name(collection: str, path: tuple[str, ...]) -> str:
    """("params", ("Mixed_5b", "branch1x1", "conv", "kernel"))
    -> "Mixed_5b.branch1x1.conv.weight"."""
    return ".".join([*path[:-1], _LEAVES[(collection, path[-1])][0]])


def variables_from_state_dict(state: dict[str, np.ndarray], source: str = "weights") -> Any:
    """A PyTorch-named state dict -> the flax variables of FIDInceptionV3."""
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3)))

    def convert(key_path, shape):
        collection = key_path[0].key
        path = tuple(k.key for k in key_path[1:])
        name = torch_name(collection, path)
        if name not in state:
            raise ConfigError(f"{source} lacks '{name}': not FID Inception-v3 weights")
        value = _LEAVES[(collection, path[-1])][1](np.asarray(state[name], np.float32))
        if value.shape != shape.shape:
            raise ConfigError(f"{source}: '{name}' has shape {value.shape}, expected "
                              f"{shape.shape} (after conversion)")
        return jnp.asarray(value)

    return jax.tree_util.tree_map_with_path(convert, shapes)


def check_weights_file(path: str) -> None:
    if not path or not os.path.isfile(path):
        raise ConfigError(f"eval.extractor=inception needs eval.inception_weights=PATH, a local "
                          f".npz of the FID Inception-v3 weights (got '{path}'; jaxgen never "
                          "downloads them: see jaxgen/eval/inception.py)")


def load_inception(path: str) -> Extractor:
    """The FID Inception-v3 as an Extractor; a clear ConfigError when the file is missing."""
    check_weights_file(path)
    with np.load(path) as archive:  # allow_pickle stays False: arrays only
        state = {k: archive[k] for k in archive.files}
    variables = variables_from_state_dict(state, path)
    mesh = parallel.make_mesh()
    model = FIDInceptionV3()

    def features(v, images):
        return {"features": model.apply(v, images)}

    compiled = jax.jit(features, in_shardings=(parallel.replicated(mesh),
                                               parallel.batch_sharded(mesh)),
                       out_shardings=parallel.replicated(mesh))
    return Extractor(name="inception-v3-fid",
                     apply=extractor_lib.on_mesh(compiled, variables, mesh), num_classes=0,
                     test_accuracy=float("nan"), directory=path)
