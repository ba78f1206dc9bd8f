"""GANs: the two phases of a step, the regularisers, conditioning, training on digits,
resume after SIGKILL and data parallelism."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.training import trainer
from jaxgen.core.config import ConfigError
from jaxgen.data.sources import DataSpec
from jaxgen.models.dcgan import SPECTRAL_STATS, Discriminator
from jaxgen.families import gan
from jaxgen.training.writers import read_metrics
from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
from tests.helpers import SMALL_EVAL, assert_resumes_exactly_on_any_device_count, run_cli

TINY_GAN = [
    "--config=experiments/gan_digits.py", "--config.model.latent_dim=8",
    "--config.model.generator_features=(16,8)", "--config.model.discriminator_features=(8,16)",
    "--config.train.batch_size=32", "--config.eval.batch_size=64",
    "--config.eval.num_examples=128", "--config.sample.num=16",
    "--config.train.log_every_steps=10", "--config.checkpoint.every_steps=20",
    "--config.eval.every_steps=1000", "--config.sample.every_steps=1000", *SMALL_EVAL,
    "--config.model.r1_gamma=0.0",  # the tests that need R1 set it
]


def _family(**model):
    config = gan.default_config()
    config.model.latent_dim = 8
    config.model.generator_features, config.model.discriminator_features = (16, 8), (8, 16)
    for key, value in model.items():
        config.model[key] = value
    return gan.GANFamily(config, DataSpec((8, 8, 1), 10, 16))


def _batch(num=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.uniform(-1, 1, (num, 8, 8, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 10, num), jnp.int32)}


def _changed(before, after) -> bool:
    return any(not np.array_equal(a, b)
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


@pytest.mark.parametrize("model", [
    {}, {"loss": "minimax"}, {"loss": "hinge", "discriminator_steps": 2},
    {"r1_gamma": 10.0}, {"spectral_norm": True}, {"conditional": True, "spectral_norm": True},
])
def test_each_phase_updates_only_its_own_network(model):
    family = _family(**model)
    batch = _batch()
    state = jax.jit(family.init, compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(0), batch)
    after_d, d_metrics = jax.jit(family.discriminator_phase)(state, batch, jax.random.key(1))
    assert _changed(state.params["discriminator"], after_d.params["discriminator"])
    assert _changed(state.opt_state["discriminator"], after_d.opt_state["discriminator"])
    assert not _changed(state.params["generator"], after_d.params["generator"])
    assert not _changed(state.opt_state["generator"], after_d.opt_state["generator"])
    if model.get("spectral_norm"):
        assert _changed(state.model_state, after_d.model_state)  # power iteration advanced

    after_g, g_metrics = jax.jit(family.generator_phase)(after_d, batch, jax.random.key(2))
    assert _changed(after_d.params["generator"], after_g.params["generator"])
    assert _changed(after_d.opt_state["generator"], after_g.opt_state["generator"])
    assert not _changed(after_d.params["discriminator"], after_g.params["discriminator"])
    assert not _changed(after_d.opt_state["discriminator"], after_g.opt_state["discriminator"])
    assert not _changed(after_d.model_state, after_g.model_state)
    for value in {**d_metrics, **g_metrics}.values():
        assert np.isfinite(value)


def test_the_step_logs_both_losses_both_probabilities_and_both_gradient_norms():
    family = _family(r1_gamma=1.0)
    batch = _batch()
    state = family.init(jax.random.key(0), batch)
    _, metrics = jax.jit(family.train_step)(state, batch, jax.random.key(1))
    for key in ("d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm", "r1"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1
    assert float(metrics["r1"]) > 0
    assert float(metrics["d_loss"]) == pytest.approx(
        float(metrics["d_adversarial"]) + 0.5 * float(metrics["r1"]), rel=1e-5)


def test_r1_is_the_squared_input_gradient_norm_of_the_logit():
    family = _family()
    batch = _batch(4)
    state = family.init(jax.random.key(0), batch)
    d = state.params["discriminator"]
    jacobian = jax.jacrev(lambda x: family.logits(d, None, x)[0])(batch["image"])  # [B, B, ...]
    per_example = [float(jnp.sum(jacobian[i, i] ** 2)) for i in range(4)]
    assert float(family.r1_penalty(d, None, batch["image"])) == pytest.approx(
        np.mean(per_example), rel=1e-4)


def test_spectral_norm_estimates_the_largest_singular_value_of_each_layer():
    model = Discriminator(features=(8, 16), spectral_norm=True)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    stats = variables[SPECTRAL_STATS]
    for _ in range(30):  # power iteration, one step per training step
        _, updated = model.apply({"params": variables["params"], SPECTRAL_STATS: stats}, x,
                                 update_stats=True, mutable=[SPECTRAL_STATS])
        stats = updated[SPECTRAL_STATS]
    sigmas = {name: value for wrapper in stats.values() for name, value in wrapper.items()}
    checked = 0
    for layer, params in variables["params"].items():
        kernel = np.asarray(params["kernel"]).reshape(-1, params["kernel"].shape[-1])
        sigma = sigmas[f"{layer}/kernel/sigma"]
        assert float(sigma) == pytest.approx(np.linalg.svd(kernel, compute_uv=False)[0],
                                             rel=1e-3), layer
        checked += 1
    assert checked == 3  # two convolutions and the logit layer


def test_the_projection_discriminator_depends_on_the_label():
    family = _family(conditional=True)
    batch = _batch(8)
    state = family.init(jax.random.key(0), batch)
    d = state.params["discriminator"]
    # Give the projection a visible weight: the embedding starts near 0.
    d = jax.tree_util.tree_map_with_path(
        lambda path, v: v * 100 if "Embed" in jax.tree_util.keystr(path) else v, d)
    a = family.logits(d, None, batch["image"], batch["label"])[0]
    b = family.logits(d, None, batch["image"], (batch["label"] + 1) % 10)[0]
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    unconditional = _family()
    assert "Embed_0" not in unconditional.init(jax.random.key(0), batch).params["discriminator"]


def test_bad_gan_settings_are_config_errors():
    with pytest.raises(ConfigError, match="model.loss"):
        _family(loss="wasserstein")
    with pytest.raises(ConfigError, match="discriminator_steps"):
        _family(discriminator_steps=0)


@pytest.mark.slow
def test_training_on_digits_gives_samples_of_several_classes(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY_GAN, f"--workdir={workdir}",
                               "--config.model.latent_dim=16",
                               "--config.model.generator_features=(32,16)",
                               "--config.model.discriminator_features=(16,32)",
                               "--config.train.batch_size=64", "--config.train.num_steps=1500",
                               "--config.eval.every_steps=500", "--config.eval.track_samples=256"])
    assert result.returncode == 0, result.stderr[-3000:]
    # eval.track_samples logged the sample metrics at every eval step.
    tracked = [r for r in read_metrics(workdir, "test") if "recall" in r]
    assert [r["step"] for r in tracked] == [500, 1000, 1500]
    result = run_cli("evaluate", [f"--workdir={workdir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        values = json.load(f)["values"]
    assert values["classes_covered"] >= 5, values
    assert (tmp_path / "loss_curves.png").is_file()


@pytest.mark.slow
def test_sigkill_restart_and_eight_devices_end_at_the_uninterrupted_parameters(tmp_path):
    # Both networks, spectral norm's power-iteration vectors and R1 are part of the step.
    assert_resumes_exactly_on_any_device_count(
        str(tmp_path), [*TINY_GAN, "--config.model.spectral_norm=True",
                        "--config.model.r1_gamma=1.0", "--config.checkpoint.every_steps=5"],
        steps=20, kill_after=5,
        keys=("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm"))


def test_sample_draws_interpolations_and_a_class_grid_for_a_conditional_gan(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY_GAN, f"--workdir={workdir}", "--config.train.num_steps=10",
                               "--config.model.conditional=True"])
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("sample", [f"--workdir={workdir}", "--num=16",
                                "--interpolation_steps=5"])
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(os.listdir(tmp_path / "samples"))
    assert written == ["class_grid_step_0000010.png", "interpolation_step_0000010.png",
                       "sample_grid_step_0000010.png", "step_0000010.png"], written


@pytest.mark.slow
def test_an_unconditional_gan_samples_attribute_vectors_on_three_devices(tmp_path):
    # The classifier that names the samples' classes runs on batches of 500 (not a multiple
    # of 3) of replicated images: the extractor pads and splits them itself.
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY_GAN, f"--workdir={workdir}", "--config.train.num_steps=10",
                               "--config.train.batch_size=30"], num_devices=3)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("sample", [f"--workdir={workdir}", "--num=16", "--interpolation_steps=5"],
                     num_devices=3)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "samples" / "interpolation_step_0000010.png").is_file()


def test_the_trainer_runs_a_gan_in_process(tmp_path):
    flags, overrides = cli.parse(cli.parser(""), [*TINY_GAN, f"--workdir={tmp_path}",
                                                  "--config.train.num_steps=20"])
    config, splits, family = cli.prepare(flags, overrides)
    state = trainer.train(config, str(tmp_path), family, splits)
    assert int(state.step) == 20
    assert set(state.params) == {"generator", "discriminator"}
    test_rows = read_metrics(str(tmp_path), "test")
    assert 0 < test_rows[-1]["d_real"] < 1 and 0 < test_rows[-1]["d_fake"] < 1
