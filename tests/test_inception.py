"""Inception-v3 from a local file: the architecture's size and the weight mapping.

No pretrained weights are reachable here, so the mapping is checked with random ones
written under PyTorch's names and shapes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.config import ConfigError
from jaxgen.eval import inception


def _torch_state_dict(variables):
    """The inverse of the loader's mapping: flax variables -> PyTorch names and layouts."""
    state = {}
    for key_path, value in jax.tree_util.tree_leaves_with_path(variables):
        collection, path = key_path[0].key, tuple(k.key for k in key_path[1:])
        value = np.asarray(value)
        if path[-1] == "kernel":
            value = np.transpose(value, (3, 2, 0, 1))  # [kh, kw, in, out] -> [out, in, kh, kw]
        state[inception.torch_name(collection, path)] = value
    return state


def test_parameter_count_is_torchvisions_backbone():
    shapes = jax.eval_shape(inception.FIDInceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, 299, 299, 3)))
    count = sum(math.prod(s.shape) for s in jax.tree.leaves(shapes["params"]))
    # torchvision's inception_v3: 27,161,264 parameters, less AuxLogits (3,326,696) and fc.
    assert count == 27_161_264 - 3_326_696 - 2_049_000


def _random_variables(model, seed=1):
    """Variables of every leaf of `model` drawn in NumPy (initialising the network eagerly
    takes 24 s): He-scaled kernels, and batch statistics and affine terms away from their
    initial 0 and 1, so that a leaf loaded into the wrong place changes the features."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['kernel']"):
            fan_in = math.prod(leaf.shape[:-1])
            value = rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in)
        elif name.endswith("['var']") or name.endswith("['scale']"):
            value = rng.uniform(0.5, 1.5, leaf.shape)
        else:  # mean, bias
            value = rng.uniform(-0.1, 0.1, leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.slow
def test_weights_load_from_npz_under_pytorch_names(tmp_path):
    model = inception.FIDInceptionV3()
    variables = _random_variables(model)
    state = _torch_state_dict(variables)
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    path = str(tmp_path / "inception.npz")
    np.savez(path, **state)

    extractor = inception.load_inception(path)
    images = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1))
    features = np.asarray(extractor.apply(images)["features"])
    assert features.shape == (2, 2048) and np.all(np.isfinite(features))
    np.testing.assert_allclose(features, jax.jit(model.apply)(variables, images), rtol=1e-5,
                               atol=1e-6)

    del state["Mixed_6b.branch7x7_2.conv.weight"]
    np.savez(path, **state)
    with pytest.raises(ConfigError, match="lacks 'Mixed_6b.branch7x7_2.conv.weight'"):
        inception.load_inception(path)
    with pytest.raises(ConfigError, match="never downloads"):
        inception.load_inception(str(tmp_path / "missing.npz"))


def _pytorch_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """NumPy float64 of PyTorch's F.interpolate(bilinear, align_corners=False), [H, W, C]:
    source = (dst + 0.5) * in / out - 0.5, clamped at 0; neighbours clamped at the edge."""
    def taps(n_in):
        source = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, source - low

    (r0, r1, wr), (c0, c1, wc) = taps(image.shape[0]), taps(image.shape[1])
    rows = image[r0] * (1 - wr)[:, None, None] + image[r1] * wr[:, None, None]
    return rows[:, c0] * (1 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]


@pytest.mark.parametrize("size", [400, 28, 299])
def test_resize_is_pytorch_fids_bilinear_without_antialiasing(size):
    image = np.random.default_rng(size).uniform(0, 1, (size, size, 3))
    got = np.asarray(inception.resize_like_pytorch_fid(jnp.asarray(image[None], jnp.float32)))[0]
    # float32 source coordinates (as PyTorch's own) stay within 1e-4 of the float64 ones;
    # the antialiased resize differed by 0.40 on the 400 px input.
    np.testing.assert_allclose(got, _pytorch_bilinear(image, inception.INPUT_SIZE), atol=1e-4)
