"""PixelCNN++: causality of the whole network, a proper discrete likelihood, sampling, training
(its NLL far below the uniform's), exact resume and data parallelism."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import config as config_lib
from jaxgen.data.sources import DataSpec
from jaxgen.families import build
from jaxgen.losses import logistic_mixture as lm
from jaxgen.training.writers import read_metrics
from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
from tests.helpers import assert_resumes_exactly_on_any_device_count, run_cli

TINY = ["--config=experiments/pixelcnn_digits.py", "--config.model.filters=8",
        "--config.model.num_resnet=1", "--config.model.num_mixtures=2",
        "--config.train.batch_size=32", "--config.eval.num_samples=0",
        "--config.train.log_every_steps=10", "--config.checkpoint.every_steps=10",
        "--config.eval.every_steps=1000", "--config.sample.every_steps=1000",
        "--config.sample.num=4"]


def tiny_family(shape, conditional=False, levels=17, resolutions=2):
    config = config_lib.load("experiments/pixelcnn_digits.py")
    config.model.filters, config.model.num_resnet, config.model.num_mixtures = 8, 1, 2
    config.model.num_resolutions = resolutions
    config.model.conditional = conditional
    return build(config, DataSpec(shape, 10, levels - 1))


def grid_images(rng, shape, levels=17, num=2):
    return jnp.round(jax.random.uniform(rng, (num,) + shape) * (levels - 1)) * (
        2.0 / (levels - 1)) - 1.0


@pytest.mark.parametrize("shape, conditional", [((8, 8, 1), False), ((8, 8, 3), True)])
def test_no_output_depends_on_its_own_pixel_or_a_later_one(shape, conditional):
    """d output(r, c) / d x(r', c', channel) is exactly zero for (r', c') at or after (r, c) in
    raster order (every channel), through both resolutions; and there is a dependence where
    there may be."""
    family = tiny_family(shape, conditional)
    x = grid_images(jax.random.key(0), shape, num=1)
    labels = jnp.asarray([3]) if conditional else None
    state = jax.jit(family.init, compiler_options=INIT_COMPILER_OPTIONS)(
        jax.random.key(1), {"image": x, "label": jnp.asarray([3])})
    # Non-trivial weights everywhere (the heads start random anyway).
    params = jax.tree.map(lambda p: p + 0.1, state.params)

    def outputs(image):
        return family.apply(params, image[None], labels)[0]  # [H, W, outputs]

    jacobian = np.asarray(jax.jit(jax.jacrev(outputs))(x[0]))  # [H, W, outputs, H, W, C]
    height, width = shape[:2]
    seen = np.any(jacobian != 0, axis=(2, 5))  # [H, W, H, W]: output position <- input pixel
    for r in range(height):
        for c in range(width):
            later = np.zeros((height, width), bool)
            later.reshape(-1)[r * width + c:] = True
            assert not np.any(seen[r, c] & later), (r, c)
    # The last pixel sees every row above it (the u stream) and its left neighbour (ul).
    assert seen[-1, -1, :-1].all() and seen[-1, -1, -1, -2]


def test_a_channel_mean_depends_only_on_earlier_channels():
    """The within-pixel coupling (eq. 3): mean of channel k is a function of x_<k only."""
    rng = jax.random.split(jax.random.key(0), 3)
    means = jax.random.normal(rng[0], (3, 4))
    coefficients = jnp.tanh(jax.random.normal(rng[1], (3, 4)))

    def coupled(x):
        return lm.coupled_means(means, coefficients, x)  # [C, K]

    jacobian = np.asarray(jax.jacrev(coupled)(jax.random.normal(rng[2], (3,))))  # [C, K, C]
    for k in range(3):
        assert np.all(jacobian[k, :, k:] == 0), k
        assert np.all(jacobian[k, :, :k] != 0), k


def _all_values(levels: int, channels: int) -> jax.Array:
    grid = np.linspace(-1.0, 1.0, levels)
    mesh = np.stack(np.meshgrid(*([grid] * channels), indexing="ij"), axis=-1)
    return jnp.asarray(mesh.reshape(-1, 1, 1, channels), jnp.float32)


@pytest.mark.parametrize("levels, channels", [(256, 1), (17, 1), (8, 3)])
def test_the_mixture_sums_to_one_over_every_value_of_a_pixel(levels, channels):
    """Over all levels^C values of one pixel, sum of p = 1, for parameters from tame to extreme
    (means outside [-1, 1], scales at the floor and large)."""
    k = 3
    values = _all_values(levels, channels)
    for seed, spread in enumerate((0.5, 3.0, 8.0)):
        output = spread * jax.random.normal(jax.random.key(seed),
                                            (lm.num_outputs(channels, k),))
        log_p = lm.log_prob(values, jnp.broadcast_to(output, values.shape[:3] + output.shape),
                            levels, k)
        assert np.all(np.isfinite(log_p))
        total = float(jax.nn.logsumexp(log_p))
        assert abs(total) < 2e-4, (spread, total)


def test_sampling_is_exact_to_the_grid_and_deterministic_for_a_key():
    family = tiny_family((6, 6, 3))
    state = family.init(jax.random.key(1), {"image": jnp.zeros((1, 6, 6, 3)),
                                            "label": jnp.zeros((1,), jnp.int32)})
    sample = jax.jit(family.sample, static_argnames="num")
    first = np.asarray(sample(state, jax.random.key(7), 5))
    again = np.asarray(sample(state, jax.random.key(7), 5))
    other = np.asarray(sample(state, jax.random.key(8), 5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    levels = (first + 1.0) / 2.0 * 16
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
    assert first.shape == (5, 6, 6, 3) and first.min() >= -1 and first.max() <= 1


def test_the_fast_sampler_draws_the_reference_samplers_images():
    """sample_fast (u stream once per row, rows cropped below the one drawn) computes the same
    function as one full pass per pixel: the same images for the same key, RGB and conditional,
    through three resolutions of odd sizes (5 -> 3 -> 2 rows)."""
    shape = (5, 4, 3)
    family = tiny_family(shape, conditional=True, resolutions=3)
    state = jax.jit(family.init, compiler_options=INIT_COMPILER_OPTIONS)(
        jax.random.key(2), {"image": jnp.zeros((1,) + shape), "label": jnp.zeros((1,), int)})
    fast, reference = (np.asarray(jax.jit(f, static_argnames="num")(state, jax.random.key(5), 6))
                       for f in (family.sample_fast, family.sample_reference))
    np.testing.assert_array_equal(fast, reference)
    assert len(np.unique(fast)) > 8  # not a degenerate draw (17 levels)


def test_sampling_draws_from_the_models_distribution():
    """The sampler and the likelihood are one distribution: on a one-pixel image (no context)
    the frequencies of 4,000 draws match exp(log_prob) of every value."""
    family = tiny_family((1, 1, 1), levels=5, resolutions=1)
    state = family.init(jax.random.key(3), {"image": jnp.zeros((1, 1, 1, 1)),
                                            "label": jnp.zeros((1,), jnp.int32)})
    values = _all_values(5, 1)
    output = family.apply(state.params, jnp.zeros((5, 1, 1, 1)))
    probability = np.exp(np.asarray(lm.log_prob(values, output, 5, family.num_mixtures)))
    drawn = np.asarray(jax.jit(family.sample, static_argnames="num")(
        state, jax.random.key(0), 4000)).reshape(-1)
    frequency = np.array([np.mean(np.isclose(drawn, v)) for v in np.linspace(-1, 1, 5)])
    np.testing.assert_allclose(frequency, probability, atol=0.03)


@pytest.mark.slow
def test_a_trained_digits_model_is_far_below_the_uniform_likelihood(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY, f"--workdir={workdir}", "--config.train.num_steps=300",
                               "--config.eval.every_steps=300", "--config.sample.every_steps=0"])
    assert result.returncode == 0, result.stderr[-3000:]
    test = read_metrics(workdir, "test")[-1]
    uniform = math.log2(17)  # 4.09 bits/dim on digits' 17 grey levels
    assert test["nll_bits_per_dim"] < uniform - 1.0, test
    sampled = run_cli("sample", [f"--workdir={workdir}", "--num=4"])
    assert sampled.returncode == 0, sampled.stderr[-3000:]


@pytest.mark.slow
def test_sigkill_restart_and_eight_devices_end_at_the_uninterrupted_parameters(tmp_path):
    assert_resumes_exactly_on_any_device_count(str(tmp_path), [
        *TINY, "--config.checkpoint.every_steps=5"], steps=20, kill_after=5,
                                               keys=("loss", "nll", "grad_norm"))
