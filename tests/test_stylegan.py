"""StyleGAN2: demodulation, style mixing, truncation, lazy regularisation, path length, the
pictures and PPL, resume after SIGKILL, data parallelism, conditional samples."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core.config import ConfigError
from jaxgen.data.sources import DataSpec
from jaxgen.eval import path_length
from jaxgen.families import stylegan
from jaxgen.models.stylegan import ModulatedConv, SynthesisNetwork, minibatch_stddev
from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
from jaxgen.training.writers import read_metrics
from tests.helpers import (SMALL_EVAL, TRAINING_ONLY, assert_resumes_exactly_on_any_device_count,
                           run_cli)

TINY_STYLEGAN = [
    "--config=experiments/stylegan_digits.py", "--config.model.latent_dim=8",
    "--config.model.w_dim=8", "--config.model.mapping_depth=2",
    "--config.model.generator_widths=(16,8)", "--config.model.discriminator_widths=(8,16)",
    "--config.train.batch_size=32", "--config.eval.batch_size=64",
    "--config.eval.num_examples=128", "--config.sample.num=16",
    "--config.train.log_every_steps=10", "--config.checkpoint.every_steps=20",
    "--config.eval.every_steps=1000", "--config.sample.every_steps=1000",
    "--config.eval.track_samples=0", "--config.eval.ppl_samples=128", *SMALL_EVAL,
]


def _family(image_size=16, **model):
    config = stylegan.default_config()
    config.model.latent_dim = config.model.w_dim = 8
    config.model.mapping_depth = 2
    widths = (16, 8, 8)[:{8: 2, 16: 3}[image_size]]
    config.model.generator_widths, config.model.discriminator_widths = widths, widths[::-1]
    for key, value in model.items():
        config.model[key] = value
    return stylegan.StyleGANFamily(config, DataSpec((image_size, image_size, 1), 10, 255))


def _init(family, batch):
    """The family's initial state, compiled as the trainer compiles it on CPU (fast)."""
    return jax.jit(family.init, compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(0), batch)


def _batch(num=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(-1, 1, (num, size, size, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, num), jnp.int32)}


def test_demodulation_gives_unit_variance_outputs_for_unit_variance_inputs():
    # The paper's argument (sec. 2.2): with i.i.d. unit-variance inputs, out_j has variance
    # sum_i,k (s_i W_ijk)^2 / sigma_j^2 = 1 whatever the style and the weights.
    conv = ModulatedConv(32)
    x = jax.random.normal(jax.random.key(0), (16, 12, 12, 24))
    w = 3.0 * jax.random.normal(jax.random.key(1), (16, 8))  # styles far from 1
    variables = conv.init(jax.random.key(2), x, w)
    inner = conv.apply(variables, x, w)[:, 1:-1, 1:-1]  # away from the zero padding
    per_channel = np.asarray(jnp.var(inner, axis=(0, 1, 2)))
    np.testing.assert_allclose(per_channel, 1.0, atol=0.12)
    assert abs(float(jnp.var(inner)) - 1.0) < 0.03
    undemodulated = ModulatedConv(32, demodulate=False).apply(variables, x, w)[:, 1:-1, 1:-1]
    assert float(jnp.var(undemodulated)) > 2.0  # the styles do scale it without demodulation


def test_style_mixing_at_layer_k_uses_w1_before_k_and_w2_from_k_on():
    network = SynthesisNetwork((16, 8, 8), channels=1)  # 16x16: 6 style inputs
    num_ws = network.num_ws
    w1, w2 = jax.random.normal(jax.random.key(0), (2, 2, 8))
    variables = jax.jit(network.init, compiler_options=INIT_COMPILER_OPTIONS)(
        jax.random.key(1), jnp.zeros((2, num_ws, 8)))
    # A visible noise strength, so the test also covers the noise path.
    variables = jax.tree_util.tree_map_with_path(
        lambda p, v: v + 0.5 if "noise_strength" in jax.tree_util.keystr(p) else v, variables)
    layer_style = {"conv_4": 0, "rgb_4": 1, "conv0_8": 1, "conv1_8": 2, "rgb_8": 3,
                   "conv0_16": 3, "conv1_16": 4, "rgb_16": 5}

    @jax.jit
    def layer_outputs(ws):
        _, state = network.apply(variables, ws, jax.random.key(2), capture_intermediates=True)
        return {name: v["__call__"][0] for name, v in state["intermediates"].items()
                if name in layer_style}

    for k in range(1, num_ws):
        layer = jnp.arange(num_ws)[None, :, None]
        mixed = jnp.where(layer < k, w1[:, None], w2[:, None])
        perturbed = jnp.where(layer < k, w1[:, None], (w2 + 1.0)[:, None])
        before, after = layer_outputs(mixed), layer_outputs(perturbed)
        assert set(before) == set(layer_style)
        for name, style in layer_style.items():
            changed = not np.array_equal(before[name], after[name])
            assert changed == (style >= k), (k, name)


def test_training_styles_switch_from_w1_to_w2_once_with_the_mixing_probability():
    family = _family(style_mixing=1.0)
    state = _init(family, _batch())
    params = state.params["generator"]
    mixed_styles = jax.jit(family.mixed_styles, static_argnums=2)
    crossovers = set()
    for seed in range(12):
        ws, w = mixed_styles(params, jax.random.key(seed), 4)
        np.testing.assert_array_equal(ws[:, 0], w)
        same = np.all(np.asarray(ws) == np.asarray(w)[:, None], axis=(0, 2))  # [num_ws]
        k = int(np.argmin(same))
        assert 1 <= k < family.num_ws and same[:k].all() and not same[k:].any()
        assert np.all(np.asarray(ws[:, k:]) == np.asarray(ws[:, -1:]))  # one w2 after k
        crossovers.add(k)
    assert len(crossovers) > 1
    unmixed = _family(style_mixing=0.0)
    ws, w = unmixed.mixed_styles(params, jax.random.key(0), 4)
    np.testing.assert_array_equal(ws, jnp.repeat(w[:, None], unmixed.num_ws, axis=1))


def test_truncation_at_psi_zero_gives_the_same_image_for_every_z():
    family = _family()
    state = _init(family, _batch())
    # A trained-looking running mean: not zero.
    state = state.replace(model_state={**state.model_state,
                                       "w_avg": jax.random.normal(jax.random.key(1), (8,))})
    z = family.latents(jax.random.key(2), 6)
    images = family.truncated(state, family.mapping(state, z), psi=0.0)
    np.testing.assert_array_equal(images, jnp.broadcast_to(state.model_state["w_avg"], (6, 8)))
    family.truncation_psi = 0.0
    pictures = np.asarray(family.from_latents(state, z))
    np.testing.assert_allclose(pictures, np.broadcast_to(pictures[:1], pictures.shape),
                               atol=1e-6)
    family.truncation_psi = 1.0
    untruncated = np.asarray(family.from_latents(state, z))
    assert np.abs(untruncated - untruncated[:1]).max() > 1e-3


def test_lazy_r1_runs_on_every_kth_step_weighted_by_k():
    family = _family(8, r1_gamma=2.0, r1_interval=16)
    assert [family.regularisers_due(s) for s in (0, 1, 15, 16, 32)] == [
        {"r1"}, set(), set(), {"r1"}, {"r1"}]
    batch = _batch(size=8)
    state = _init(family, batch)
    step = jax.jit(family.train_step, static_argnums=3)
    _, due = step(state, batch, jax.random.key(1), frozenset({"r1"}))
    assert float(due["r1"]) > 0
    # gamma/2 * interval = 16: the expected weight of R1 every step at gamma 2.
    assert float(due["d_loss"]) == pytest.approx(
        float(due["d_adversarial"]) + 16.0 * float(due["r1"]), rel=1e-5)
    _, not_due = step(state, batch, jax.random.key(1), frozenset())
    assert float(not_due["r1"]) == 0.0
    assert float(not_due["d_loss"]) == float(not_due["d_adversarial"])
    assert float(not_due["d_adversarial"]) == pytest.approx(float(due["d_adversarial"]))
    assert _family(r1_gamma=0.0).regularisers_due(0) == frozenset()


def test_path_length_regularisation_moves_its_target_toward_the_mean_length():
    family = _family(8, pl_weight=2.0, pl_interval=4, pl_decay=0.01)
    assert [family.regularisers_due(s) for s in (0, 4, 5, 16)] == [
        {"r1", "path_length"}, {"path_length"}, set(), {"r1", "path_length"}]
    batch = _batch(size=8)
    state = _init(family, batch)
    step = jax.jit(family.generator_phase, static_argnums=3)
    after, metrics = step(state, batch, jax.random.key(1), frozenset({"path_length"}))
    target = float(after.model_state["pl_mean"])
    assert target > 0 and float(metrics["pl_penalty"]) > 0
    # From a = 0: a' = 0.01 E[length], so the penalty E[(length - a')^2] = Var(length) +
    # (0.99 E[length])^2.
    lengths_mean = target / 0.01
    assert float(metrics["pl_penalty"]) >= (0.99 * lengths_mean) ** 2 * (1 - 1e-4)
    after_skip, skipped = step(state, batch, jax.random.key(1), frozenset())
    assert float(skipped["pl_penalty"]) == 0.0
    assert float(after_skip.model_state["pl_mean"]) == 0.0
    # The generator's loss adds pl_weight * pl_interval = 8 times the penalty when it is due.
    assert float(metrics["g_loss"]) == pytest.approx(
        float(skipped["g_loss"]) + 8.0 * float(metrics["pl_penalty"]), rel=1e-5)


def test_minibatch_stddev_is_the_groups_feature_deviation_averaged():
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 6)).astype(np.float32)
    out = np.asarray(minibatch_stddev(jnp.asarray(x), group_size=4, features=2))
    assert out.shape == (8, 4, 4, 8)
    np.testing.assert_array_equal(out[..., :6], x)
    for i in range(8):
        group = x[i % 2::2]  # example i is in group i mod N/G
        for f in range(2):
            expected = np.sqrt(group[..., 3 * f:3 * f + 3].var(axis=0) + 1e-8).mean()
            np.testing.assert_allclose(out[i, :, :, 6 + f], expected, rtol=1e-5)
    odd = minibatch_stddev(jnp.asarray(x[:6]), group_size=4)  # 6 examples: groups of 3
    assert odd.shape == (6, 4, 4, 7)


def test_path_length_is_the_normalised_feature_distance_over_epsilon_squared():
    theta = 1e-3
    a, b = np.array([[2.0, 0.0]]), np.array([[np.cos(theta), np.sin(theta)]]) * 5
    np.testing.assert_allclose(path_length.feature_distance(a, b), 2 - 2 * np.cos(theta),
                               rtol=1e-6)
    lengths = path_length.path_lengths(lambda b: (np.ones((2, 1)), np.ones((2, 1))),
                                       lambda x: np.concatenate([x, x * 0 + b], 1), 3, 0.1)
    assert lengths.shape == (6,)
    values = np.concatenate([np.ones(990), np.full(5, 1000.0), np.full(5, -1000.0)])
    assert path_length.trimmed_mean(values) == pytest.approx(1.0)


@pytest.mark.parametrize("size", [32, 64])
def test_32_and_64_pixel_rgb_models_build_with_the_shapes_of_their_images(size):
    config = stylegan.default_config()
    widths = (64, 64, 32, 16, 8)[:{32: 4, 64: 5}[size]]
    config.model.generator_widths, config.model.discriminator_widths = widths, widths[::-1]
    family = stylegan.StyleGANFamily(config, DataSpec((size, size, 3), 10, 255))
    assert family.num_ws == 2 * len(widths)
    batch = {"image": jnp.zeros((4, size, size, 3)), "label": jnp.zeros((4,), jnp.int32)}
    state = jax.eval_shape(family.init, jax.random.key(0), batch)  # traced, not compiled
    images = jax.eval_shape(lambda s, k: family.sample(s, k, 4), state, jax.random.key(1))
    assert images.shape == (4, size, size, 3)
    _, metrics = jax.eval_shape(family.train_step, state, batch, jax.random.key(2))
    assert set(metrics) >= {"d_loss", "g_loss", "r1"}


def test_widths_that_do_not_fit_the_images_are_config_errors():
    with pytest.raises(ConfigError, match="generator_widths has 3 resolutions, for 16x16 "
                                          "images, but the data's are 8x8"):
        stylegan.StyleGANFamily(_family().config, DataSpec((8, 8, 1), 10, 16))
    with pytest.raises(ConfigError, match="style_mixing"):
        _family(style_mixing=1.5)


def test_train_sample_and_evaluate_a_tiny_model(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY_STYLEGAN, f"--workdir={workdir}",
                               "--config.train.num_steps=20",
                               "--config.train.log_every_steps=1", *TRAINING_ONLY])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train step (with r1) compiled" in result.stderr
    # Lazy R1: the updates from steps 0 and 16 (logged as steps 1 and 17) only.
    r1 = {row["step"]: row["r1"] for row in read_metrics(workdir, "train")}
    assert [step for step, value in r1.items() if value > 0] == [1, 17]
    result = run_cli("sample", [f"--workdir={workdir}", "--num=16", "--interpolation_steps=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(os.listdir(tmp_path / "samples"))
    for name in ("style_mixing", "truncation", "noise", "w_against_z", "interpolation",
                 "sample_grid"):
        assert f"{name}_step_0000020.png" in written, written
    result = run_cli("evaluate", [f"--workdir={workdir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        values = json.load(f)["values"]
    assert values["ppl_z"] > 0 and values["ppl_w"] > 0 and np.isfinite(values["fid"])


@pytest.mark.slow
def test_sigkill_restart_and_eight_devices_end_at_the_uninterrupted_parameters(tmp_path):
    # Killed between 5 and 16: the lazy R1 program (step 16) is compiled again after the
    # restart; the running mean of w is part of the state compared. Minibatch standard
    # deviation mixes examples: its groups must not depend on the devices.
    assert_resumes_exactly_on_any_device_count(
        str(tmp_path), [*TINY_STYLEGAN, "--config.checkpoint.every_steps=5"], steps=20,
        kill_after=5,
        keys=("d_loss", "g_loss", "d_real", "d_fake", "r1", "g_grad_norm", "d_grad_norm"))


@pytest.mark.slow
def test_a_conditional_model_samples_the_requested_classes(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [
        "--config=experiments/stylegan_digits.py:conditional", f"--workdir={workdir}",
        "--config.train.num_steps=400", "--config.eval.every_steps=0",
        "--config.eval.track_samples=0", "--config.sample.every_steps=0",
        "--config.checkpoint.every_steps=1000", *SMALL_EVAL])
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("evaluate", [f"--workdir={workdir}", "--config.eval.ppl_samples=0"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        values = json.load(f)["values"]
    # Measured: 0.84 at step 400, 0.95 at 600 (chance: 0.1).
    assert values["conditional_accuracy"] >= 0.75, values


def test_style_pictures_group_styles_by_resolution():
    from jaxgen.pictures.style import style_ranges
    assert style_ranges(8) == {"coarse": range(0, 4), "middle": range(4, 6),
                               "fine": range(6, 8)}
    assert style_ranges(6) == {"coarse": range(0, 4), "fine": range(4, 6)}
    assert style_ranges(4) == {"coarse": range(0, 2), "fine": range(2, 4)}
    assert style_ranges(10) == {"coarse": range(0, 4), "middle": range(4, 8),
                                "fine": range(8, 10)}
