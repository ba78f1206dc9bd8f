"""Diffusion: the schedule, the forward process, the parameterisations, the bound, the
samplers and guidance."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.engine import runs
from jaxgen.training import trainer
from jaxgen.core.config import ConfigError
from jaxgen.data.sources import DataSpec
from jaxgen.diffusion import schedules, timesteps
from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
from jaxgen.families import diffusion
from jaxgen.eval.runner import generated_features
from jaxgen.losses.likelihoods import discretized_gaussian_log_likelihood
from tests.helpers import SMALL_EVAL

TINY_DDPM = [
    "--config=experiments/ddpm_digits.py", "--config.model.channels=16",
    "--config.model.channel_mults=(1,2)", "--config.model.num_groups=4",
    "--config.model.num_timesteps=100", "--config.train.batch_size=64",
    "--config.train.ema_decay=0.0", "--config.eval.batch_size=64",
    "--config.eval.num_examples=128", "--config.eval.vlb_timesteps=10",
    "--config.sample.steps=20", "--config.train.log_every_steps=10",
    "--config.checkpoint.every_steps=50", "--config.eval.every_steps=1000",
    "--config.sample.every_steps=1000", "--config.sample.num=16", *SMALL_EVAL,
]


def _prepare(tmp_path, *extra):
    flags, overrides = cli.parse(cli.parser(""), [*TINY_DDPM, f"--workdir={tmp_path}", *extra])
    return cli.prepare(flags, overrides)


def test_cosine_schedule_matches_the_formula_in_float64():
    T, s = 1000, 0.008
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
    reference = f / f[0]
    np.testing.assert_allclose(schedules.cosine_alpha_bar(t, T), reference, rtol=1e-12)
    betas = schedules.cosine_betas(T)
    expected = np.minimum(1 - reference[1:] / reference[:-1], 0.999)
    np.testing.assert_allclose(betas, expected, rtol=1e-12)
    schedule = schedules.make_schedule("cosine", T)
    alpha_bar = np.asarray(schedule.alpha_bar)
    assert alpha_bar[0] > 0.9999 and alpha_bar[-1] < 1e-4
    assert np.all(np.diff(alpha_bar) < 0)
    assert np.all(betas > 0) and np.all(betas <= 0.999) and betas[-1] == 0.999


@pytest.mark.parametrize("name", ["cosine", "linear", "scaled_linear"])
def test_every_coefficient_is_the_float64_value_rounded_once(name):
    schedule = schedules.make_schedule(name, 1000)
    betas = {"cosine": schedules.cosine_betas, "linear": schedules.linear_betas,
             "scaled_linear": lambda T: schedules.scaled_linear_betas(T, 1e-4, 0.02)}[name](1000)
    abar = np.cumprod(1.0 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    reference = {
        "sqrt_alpha_bar": np.sqrt(abar), "sqrt_one_minus_alpha_bar": np.sqrt(1.0 - abar),
        "posterior_mean_x0": betas * np.sqrt(abar_prev) / (1.0 - abar),
        "posterior_mean_xt": (1.0 - abar_prev) * np.sqrt(1.0 - betas) / (1.0 - abar),
    }
    for key, value in reference.items():
        np.testing.assert_array_equal(getattr(schedule, key), value.astype(np.float32),
                                      err_msg=key)
    # At t = 1 the posterior mean is x0 exactly: beta_1 / (1 - abar_1) = 1, which float32
    # arithmetic on float32 betas got as 0.99947 (cosine).
    assert float(schedule.posterior_mean_x0[0]) == 1.0
    assert float(schedule.posterior_mean_xt[0]) == 0.0


def test_the_decoder_term_l0_equals_a_float64_reference():
    """L_0 = -log p(x0 | x1) of the discretised decoder (Ho et al. 2020, eq. 13) for a nearly
    exact denoiser on 8-bit pixels (where a trained model is: the case the float32 x0
    coefficient, 0.99947, biased), against NumPy in float64 throughout (erf from math)."""
    family = _family(T=1000)
    process = family.process
    rng = np.random.default_rng(1)
    x0 = (rng.integers(0, 256, (4, 8, 8, 1)) / 255.0 * 2 - 1).astype(np.float32)
    noise = rng.normal(size=x0.shape).astype(np.float32)
    eps_hat = (noise + 0.02 * rng.normal(size=x0.shape)).astype(np.float32)
    index = jnp.zeros((4,), jnp.int32)
    got = process.bound_term(lambda x_t, i: jnp.asarray(eps_hat), jnp.asarray(x0), index,
                             jnp.asarray(noise), num_levels=256)

    betas = schedules.cosine_betas(1000)
    abar = np.cumprod(1.0 - betas)
    x0_64, noise_64, eps_64 = (a.astype(np.float64) for a in (x0, noise, eps_hat))
    x1 = np.sqrt(abar[0]) * x0_64 + np.sqrt(1 - abar[0]) * noise_64
    mean = np.clip((x1 - np.sqrt(1 - abar[0]) * eps_64) / np.sqrt(abar[0]), -1, 1)
    variance = betas[1] * (1 - abar[0]) / (1 - abar[1])  # beta~_2: beta~_1 = 0 is clipped
    std, half = math.sqrt(variance), 1.0 / 255
    cdf = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))
    upper = np.where(x0_64 > 1 - 1e-3, 1.0, cdf((x0_64 - mean + half) / std))
    lower = np.where(x0_64 < -1 + 1e-3, 0.0, cdf((x0_64 - mean - half) / std))
    reference = -np.log(np.maximum(upper - lower, 1e-12)).reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(np.asarray(got), reference, rtol=1e-4)


def test_linear_schedule_is_ho_et_al():
    betas = schedules.linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    alpha_bar = np.asarray(schedules.make_schedule("linear", 1000).alpha_bar)
    assert np.all(np.diff(alpha_bar) < 0) and alpha_bar[-1] < 1e-4
    with pytest.raises(ConfigError, match="cosine, linear, scaled_linear, got 'sigmoid'"):
        schedules.make_schedule("sigmoid", 10)


def test_scaled_linear_is_rombach_et_al_and_keeps_signal_at_t_equals_T():
    """Stable Diffusion v1's schedule: alpha_bar_T = 0.0047 at T = 1000, against the cosine
    schedule's 2.4e-9; at T = 100 the betas are 10x those of T = 1000, as linear's."""
    betas = schedules.scaled_linear_betas(1000)
    np.testing.assert_allclose(betas, np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2,
                               rtol=1e-12)
    schedule = schedules.make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    assert float(schedule.alpha_bar[-1]) == pytest.approx(0.00466, rel=1e-3)
    assert float(schedules.make_schedule("cosine", 1000).alpha_bar[-1]) < 1e-8
    np.testing.assert_allclose(schedules.scaled_linear_betas(100)[[0, -1]],
                               [0.0085, 0.12], rtol=1e-12)


def _family(prediction="eps", T=1000, **model):
    config = diffusion.default_config()
    config.model.channels, config.model.channel_mults, config.model.num_groups = 16, (1,), 4
    config.model.num_timesteps, config.model.prediction = T, prediction
    config.model.attention_resolutions = ()
    for key, value in model.items():
        config.model[key] = value
    return diffusion.DiffusionFamily(config, DataSpec((8, 8, 1), 10, 16))


def test_forward_process_has_the_predicted_mean_and_variance():
    family = _family()
    x0 = jnp.full((1, 8, 8, 1), 0.6)
    for step in (10, 300, 900):
        index = jnp.full((20000,), step)
        noise = jax.random.normal(jax.random.key(step), (20000, 8, 8, 1))
        x_t = family.process.q_sample(jnp.broadcast_to(x0, noise.shape), index, noise)
        abar = float(family.schedule.alpha_bar[step])
        assert float(x_t.mean()) == pytest.approx(math.sqrt(abar) * 0.6, abs=0.005)
        assert float(x_t.var()) == pytest.approx(1 - abar, rel=0.02, abs=1e-4)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_parameterisations_invert_each_other_and_the_exact_target_has_zero_loss(prediction):
    family = _family(prediction)
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(rng.uniform(-1, 1, (6, 8, 8, 1)), jnp.float32)
    noise = jnp.asarray(rng.normal(size=(6, 8, 8, 1)), jnp.float32)
    index = jnp.asarray([0, 1, 100, 500, 900, 999])
    x_t = family.process.q_sample(x0, index, noise)
    target = family.process.target(x0, noise, index)
    eps, x0_hat = family.process.to_eps_x0(target, x_t, index)
    # At t = T the signal is ~1e-5 of x_t: x0 is recoverable only to that precision.
    np.testing.assert_allclose(eps[:5], noise[:5], atol=1e-4)
    np.testing.assert_allclose(x0_hat[:5], x0[:5], atol=2e-3)
    assert float(jnp.mean(jnp.square(target - family.process.target(x0, noise, index)))) == 0.0


def test_discretized_decoder_is_a_distribution_over_the_pixel_grid():
    levels = 17
    grid = jnp.linspace(-1, 1, levels)
    for mean, log_scale in ((0.1, -2.0), (-0.9, -4.0), (0.95, 0.0)):
        log_p = discretized_gaussian_log_likelihood(grid, mean, log_scale, levels)
        assert float(jnp.sum(jnp.exp(log_p))) == pytest.approx(1.0, abs=1e-5)


def test_stratified_bound_estimates_the_full_sum_without_bias():
    family = _family(T=100)
    params = jax.jit(family.model.init, compiler_options=INIT_COMPILER_OPTIONS)(
        jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))["params"]
    x0 = jnp.asarray(np.random.default_rng(1).integers(0, 17, (16, 8, 8, 1)) / 8 - 1,
                     jnp.float32)

    def bounds(keys):
        return jax.jit(jax.vmap(lambda k: family.variational_bound(params, x0, None, k)))(keys)

    family.config.eval.vlb_timesteps = 0
    full = bounds(jax.random.split(jax.random.key(0), 16))
    family.config.eval.vlb_timesteps = 10
    estimates = bounds(jax.random.split(jax.random.key(1), 200))
    assert np.all(np.isfinite(full)) and np.all(full > 0)
    # Both are random (the noise of each term); their means over examples and draws agree
    # (standard errors here: ~0.3% for the full sum, ~1% for the estimate).
    assert float(estimates.mean()) == pytest.approx(float(full.mean()), rel=0.03)


@pytest.mark.slow
def test_training_on_digits_lowers_the_test_loss(tmp_path):
    config, splits, family = _prepare(tmp_path)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    initial = t.evaluate(state)["loss"]
    for step in range(150):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    final = t.evaluate(state)["loss"]
    assert initial == pytest.approx(1.0, abs=0.1)  # zero-initialised output: E[eps^2]
    assert final < 0.5 * initial


@pytest.mark.slow
def test_ddim_eta0_is_deterministic_and_eta1_all_steps_is_ddpm(tmp_path):
    config, splits, family = _prepare(tmp_path)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    for step in range(30):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    x_T = jax.random.normal(jax.random.key(5), (8, 8, 8, 1))
    run = jax.jit(family.trajectory, static_argnames=("num", "sampler", "steps", "eta"))
    a, _ = run(state, jax.random.key(1), num=8, sampler="ddim", steps=20, eta=0.0, x_T=x_T)
    b, _ = run(state, jax.random.key(2), num=8, sampler="ddim", steps=20, eta=0.0, x_T=x_T)
    np.testing.assert_array_equal(a, b)
    c, _ = run(state, jax.random.key(2), num=8, sampler="ddim", steps=20, eta=1.0, x_T=x_T)
    assert not np.allclose(a, c)
    # DDIM with eta = 1 over all T steps is DDPM's ancestral step (Song et al. 2021):
    # the same noise draws give the same samples.
    ddim, _ = run(state, jax.random.key(3), num=8, sampler="ddim", steps=100, eta=1.0, x_T=x_T)
    ddpm, _ = run(state, jax.random.key(3), num=8, sampler="ddpm", steps=100, eta=0.0, x_T=x_T)
    np.testing.assert_allclose(ddim, ddpm, atol=2e-3)


def test_cifar10_config_has_the_35_7m_parameters_of_ho_et_al():
    flags, overrides = cli.parse(cli.parser(""), ["--config=experiments/ddpm_cifar10.py",
                                                  "--workdir=/nonexistent"])
    config = cli.resolve_config(flags, overrides)
    family = diffusion.DiffusionFamily(config, DataSpec((32, 32, 3), 10, 255))
    shapes = jax.eval_shape(family.model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                            jnp.zeros((1,), jnp.int32))
    assert sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)) == 35_746_307


@pytest.mark.slow
def test_guidance_needs_a_cfg_model_and_w0_is_the_conditional_model(tmp_path):
    with pytest.raises(ConfigError, match="guidance_scale needs"):
        _prepare(tmp_path, "--config.sample.guidance_scale=2.0")
    config, splits, family = _prepare(tmp_path, "--config.model.conditional=True",
                                      "--config.model.label_dropout=0.2")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    for step in range(20):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    index, labels = jnp.full((4,), 50), jnp.arange(4)
    params = state.params
    plain = family.process.to_eps_x0(family.apply(params, x, index, labels), x, index)[0]
    w0 = family.eps_x0_fn(params, labels, 0.0)(x, index)[0]
    np.testing.assert_allclose(w0, plain, atol=1e-6)
    null = family.process.to_eps_x0(family.apply(params, x, index, jnp.full((4,), 10)), x,
                                    index)[0]
    w2 = family.eps_x0_fn(params, labels, 2.0)(x, index)[0]
    np.testing.assert_allclose(w2, 3.0 * plain - 2.0 * null, atol=1e-5)


@pytest.mark.slow
def test_classifier_guidance_steers_samples_to_the_requested_class(tmp_path):
    from tests.helpers import run_cli
    classifier_dir = tmp_path / "classifier"
    trained = run_cli("train", ["--config=experiments/guidance_classifier_digits.py",
                                f"--workdir={classifier_dir}", "--config.train.num_steps=400",
                                "--config.model.num_timesteps=100",
                                "--config.checkpoint.every_steps=400"])
    assert trained.returncode == 0, trained.stderr[-2000:]
    config, splits, family = _prepare(tmp_path / "ddpm")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    for step in range(100):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    extractors = runs.load_extractors(config, splits)

    def accuracy(scale):
        guided_config, _, guided = _prepare(
            tmp_path / "ddpm", f"--config.sample.classifier_workdir={classifier_dir}",
            f"--config.sample.classifier_scale={scale}")
        sampler = trainer.Trainer(guided_config, guided, splits).batch_sampler(state, 64)
        found = generated_features(sampler, extractors, 256, 64, guided.sampling_classes)
        return float(np.mean(found["label"] == found["requested"]))

    assert accuracy(8.0) > accuracy(0.0001) + 0.2

    with pytest.raises(ConfigError, match="not a noisy_classifier"):
        _prepare(tmp_path / "x", "--config.sample.classifier_scale=1.0",
                 f"--config.sample.classifier_workdir={extractors['classes'].directory}")
    with pytest.raises(ConfigError, match="T=100, this model uses cosine with T=1000"):
        _prepare(tmp_path / "x", "--config.sample.classifier_scale=1.0",
                 f"--config.sample.classifier_workdir={classifier_dir}",
                 "--config.model.num_timesteps=1000")


@pytest.mark.slow
def test_latent_diffusion_on_a_trained_autoencoder(tmp_path):
    from tests.helpers import TRAINING_ONLY, run_cli
    ae_dir = tmp_path / "ae"
    trained = run_cli("train", [
        "--config=experiments/ae_fashion_mnist.py", "--config.data.source=digits",
        "--config.data.name=", "--config.model.latent_dim=4", "--config.model.features=(8,16)",
        "--config.model.hidden=32", "--config.train.batch_size=32",
        "--config.eval.batch_size=64", "--config.train.num_steps=100", *TRAINING_ONLY,
        f"--workdir={ae_dir}"])
    assert trained.returncode == 0, trained.stderr[-2000:]
    flags, overrides = cli.parse(cli.parser(""), [
        "--config=experiments/ldm_fashion_mnist.py", "--config.data.source=digits",
        "--config.data.name=", f"--config.model.autoencoder_workdir={ae_dir}",
        "--config.model.channels=32", "--config.model.num_res_blocks=1",
        "--config.model.num_groups=8", "--config.model.num_timesteps=100",
        "--config.train.batch_size=64", "--config.train.ema_decay=0.0",
        "--config.eval.batch_size=64", "--config.sample.steps=10", f"--workdir={tmp_path}"])
    config, splits, family = cli.prepare(flags, overrides)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    batch = t.global_batch(t.stream.batch_at(0))
    codes = family.to_space(batch["image"])
    assert codes.shape == (64, 1, 1, 4)
    assert float(jnp.std(codes)) == pytest.approx(1.0, abs=0.25)  # scaled to unit variance
    initial = t.evaluate(state)["loss"]
    for step in range(200):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    assert t.evaluate(state)["loss"] < 0.7 * initial
    # Sampled codes stay near the data codes' scale: measured 2.3x their mean norm on this
    # tiny model, 520x on the cosine schedule (alpha_bar_T = 2.4e-7 at T = 100), where DDIM's
    # first step multiplies the eps error by hundreds in unclipped code space.
    sampled, _ = family.trajectory(state, jax.random.key(1), 64)
    norm = lambda x: float(jnp.mean(jnp.linalg.norm(x, axis=-1)))  # noqa: E731
    assert 0.25 < norm(sampled) / norm(codes) < 5.0, (norm(sampled), norm(codes))
    images = t.sample_images(state, 16)
    assert images.shape == (16, 8, 8, 1) and images.min() >= 0.0 and images.max() <= 1.0
    with pytest.raises(ConfigError, match="no trained run"):
        cli.prepare(flags, [*overrides, f"model.autoencoder_workdir={tmp_path / 'none'}"])

    # The text-to-image variant on the same codes: prompts through cross-attention at 1x1.
    flags, overrides = cli.parse(cli.parser(""), [
        "--config=experiments/text_ldm_fashion_mnist.py", "--config.data.source=digits",
        "--config.data.name=", "--config.data.caption_holdout=()",
        f"--config.model.autoencoder_workdir={ae_dir}", "--config.model.channels=32",
        "--config.model.num_res_blocks=1", "--config.model.num_groups=8",
        "--config.model.num_timesteps=100", "--config.model.text_width=16",
        "--config.train.batch_size=64", "--config.train.ema_decay=0.0",
        "--config.sample.steps=10", f"--workdir={tmp_path / 'text'}"])
    config, splits, family = cli.prepare(flags, overrides)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    assert any("cross_attention" in jax.tree_util.keystr(path)
               for path, _ in jax.tree_util.tree_leaves_with_path(state.params))
    for step in range(5):
        state, metrics = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    assert np.isfinite(float(metrics["loss"]))
    tokens = jnp.asarray(splits["test"].tokens[:4, 1])
    images = jax.jit(family.sample, static_argnames="num")(
        state, jax.random.key(0), 4, family.prompt_condition(tokens))
    assert images.shape == (4, 8, 8, 1)


@pytest.mark.slow
def test_classifier_free_guidance_raises_conditional_accuracy(tmp_path):
    cfg = ["--config=experiments/ddpm_digits.py:cfg", "--config.model.num_timesteps=100",
           "--config.model.channels=16", "--config.model.num_groups=4",
           "--config.train.batch_size=64", "--config.train.ema_decay=0.0",
           "--config.eval.batch_size=64", "--config.sample.steps=20", *SMALL_EVAL]

    def prepare(*extra):
        flags, overrides = cli.parse(cli.parser(""), [*cfg, f"--workdir={tmp_path}", *extra])
        return cli.prepare(flags, overrides)

    config, splits, family = prepare()
    assert family.num_classes == 10 and family.label_dropout == 0.1
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    for step in range(600):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    extractors = runs.load_extractors(config, splits)

    def accuracy(w):
        guided_config, _, guided = prepare(f"--config.sample.guidance_scale={w}")
        sampler = trainer.Trainer(guided_config, guided, splits).batch_sampler(state, 64)
        found = generated_features(sampler, extractors, 256, 64, guided.sampling_classes)
        return float(np.mean(found["label"] == found["requested"]))

    unguided, guided = accuracy(0.0), accuracy(3.0)
    # Measured: 0.55 unguided, 0.98 with w = 3 after 600 steps (16 channels; with 32: 0.65
    # and 1.00).
    assert guided > unguided + 0.15 and guided > 0.9


def test_a_learned_variance_interpolates_between_beta_tilde_and_beta():
    family = _family(learn_variance=True)
    process, schedule = family.process, family.schedule
    index = jnp.asarray([0, 10, 500, 999])
    shape = (4, 8, 8, 1)
    for v, expected in ((-1.0, schedule.posterior_log_variance_clipped),
                        (1.0, np.log(schedules.cosine_betas(1000)))):
        output = jnp.concatenate([jnp.zeros(shape), jnp.full(shape, v)], axis=-1)
        got = process.model_log_variance(index, output)
        np.testing.assert_allclose(got[:, 0, 0, 0], expected[index], rtol=1e-5)
    # Without learned variances the output has no variance channels.
    assert _family().process.split(jnp.zeros(shape))[1] is None


def test_the_hybrid_loss_trains_the_variance_through_the_bound_only():
    family = _family(learn_variance=True, num_timesteps=100)
    batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 17, (4, 8, 8, 1))
                                  / 8.0 - 1.0, jnp.float32), "label": jnp.zeros(4, jnp.int32)}
    state = family.init(jax.random.key(0), batch)
    rng = jax.random.key(1)
    hybrid = family.per_example_loss(state.params, batch, rng, False)
    zero = _family(learn_variance=True, num_timesteps=100, vlb_weight=0.0)
    no_vlb = zero.per_example_loss(state.params, batch, rng, False)
    assert hybrid.shape == (4,) and np.all(np.asarray(hybrid) > np.asarray(no_vlb))
    # The bound's gradient reaches the output layer's variance channels only: the mean's
    # channels get exactly the simple loss's gradient.
    def last_conv_grad(fam):
        grads = jax.grad(lambda p: jnp.mean(fam.per_example_loss(p, batch, rng, False)))(
            state.params)
        last = sorted(k for k in grads if k.startswith("Conv_"))[-1]
        return np.asarray(grads[last]["kernel"])
    with_vlb, without = last_conv_grad(family), last_conv_grad(zero)
    np.testing.assert_array_equal(with_vlb[..., :1], without[..., :1])
    assert np.abs(with_vlb[..., 1:] - without[..., 1:]).max() > 0
    # The bound and a DDPM trajectory use the learned variance and stay finite.
    bound = family.likelihood_step(state, batch, jax.random.key(2))["vlb_bits_per_dim"]
    assert np.all(np.isfinite(bound))
    x, _ = family.trajectory(state, jax.random.key(3), 2, sampler="ddpm")
    assert x.shape == (2, 8, 8, 1) and np.all(np.isfinite(x))


def test_the_loss_history_keeps_each_timesteps_last_ten_losses():
    # Reference: improved-diffusion's LossSecondMomentResampler, one deque of 10 per t.
    rng = np.random.default_rng(0)
    T = 6
    history = timesteps.init_history(T)
    reference, seen = {t: [] for t in range(T)}, np.zeros(T, int)
    for _ in range(8):
        index = rng.integers(0, T, 16)
        index[:12] = 2  # more than HISTORY at one timestep in one batch
        losses = rng.random(16).astype(np.float32)
        history = timesteps.update(history, jnp.asarray(index, jnp.int32), jnp.asarray(losses))
        for t, loss in zip(index, losses):
            reference[int(t)] = (reference[int(t)] + [loss])[-timesteps.HISTORY:]
            seen[t] += 1
    np.testing.assert_array_equal(history["count"], seen)
    for t in range(T):
        kept = np.asarray(history["losses"][t])[:min(seen[t], timesteps.HISTORY)]
        np.testing.assert_array_equal(np.sort(kept), np.sort(reference[t]))


def test_importance_sampling_draws_by_the_second_moment_without_bias():
    T = 5
    warm = {"losses": jnp.tile(jnp.arange(1.0, T + 1)[:, None], (1, timesteps.HISTORY)),
            "count": jnp.full((T,), timesteps.HISTORY, jnp.int32)}
    p = np.asarray(timesteps.probabilities(warm))
    expected = (1 - timesteps.UNIFORM_FRACTION) * np.arange(1, T + 1) / 15 + (
        timesteps.UNIFORM_FRACTION / T)
    np.testing.assert_allclose(p, expected, rtol=1e-5)
    cold = dict(warm, count=warm["count"].at[3].set(timesteps.HISTORY - 1))
    np.testing.assert_allclose(timesteps.probabilities(cold), np.full(T, 1 / T), rtol=1e-6)
    index, weight = timesteps.draw(jax.random.key(0), 200_000, warm, T)
    frequency = np.bincount(np.asarray(index), minlength=T) / 200_000
    np.testing.assert_allclose(frequency, p, atol=0.004)
    # The weighted mean of any per-timestep loss estimates its uniform-t mean.
    loss_at = np.array([3.0, -1.0, 7.0, 2.0, 0.5])
    estimate = np.mean(np.asarray(weight) * loss_at[np.asarray(index)])
    assert estimate == pytest.approx(loss_at.mean(), rel=0.02)


@pytest.mark.slow
def test_the_vlb_objective_trains_the_mean_and_importance_sampling_fills_its_history(tmp_path):
    config, splits, family = _prepare(
        tmp_path, "--config.model.loss=vlb", "--config.model.timestep_sampling=importance",
        "--config.model.learn_variance=True", "--config.model.num_timesteps=20",
        "--config.eval.vlb_timesteps=0")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    for step in range(60):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    history = jax.device_get(state.model_state)
    assert int(history["count"].sum()) == 60 * config.train.batch_size
    p = np.asarray(timesteps.probabilities(history))
    assert np.all(history["count"] >= timesteps.HISTORY) and p.max() > 2 * p.min()
    assert np.isfinite(t.evaluate(state, family.likelihood_step)["vlb_bits_per_dim"])
    # The bound's gradient reaches the mean's output channels too (unlike the hybrid loss).
    batch = {"image": jnp.asarray(splits["train"].images[:8] / 8.0 - 1.0, jnp.float32),
             "label": jnp.zeros(8, jnp.int32)}
    grads = jax.grad(lambda p: jnp.mean(family.per_example_loss(p, batch, jax.random.key(1),
                                                                False)))(state.params)
    last = sorted(k for k in grads if k.startswith("Conv_"))[-1]
    assert np.abs(np.asarray(grads[last]["kernel"])[..., :1]).max() > 0


def test_the_likelihood_recipe_puts_the_first_noise_level_below_the_bin_width():
    from jaxgen.core import config as config_lib
    config = config_lib.load("experiments/ddpm_digits.py:likelihood")
    betas = schedules.cosine_betas(config.model.num_timesteps)
    bin_width = 2.0 / 16  # 17 grey levels over [-1, 1]
    assert 0.6 * bin_width < math.sqrt(betas[0]) < bin_width
    assert config.model.learn_variance and config.eval.vlb_timesteps == 0
    with pytest.raises(ConfigError, match="ddpm_digits.py:foo: unknown variant 'foo'"):
        config_lib.load("experiments/ddpm_digits.py:foo")


def test_samples_drawn_with_other_sampler_settings_sit_beside_the_runs_own(tmp_path):
    # The run's own settings give sample_grid_step_N.png (test_gan checks that name).
    import jaxgen
    from tests.helpers import run_cli
    flags, overrides = cli.parse(cli.parser(""), [*TINY_DDPM, "--workdir=unused",
                                                  "--config.train.num_steps=2"])
    jaxgen.train(cli.resolve_config(flags, overrides), str(tmp_path))
    sampled = run_cli("sample", [f"--workdir={tmp_path}", "--num=4", "--config.sample.steps",
                                 "5", "--config.sample.sampler=ddpm"])
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    grid = sampled.stdout.splitlines()[0]
    assert os.path.basename(grid) == "sample_grid_sampler=ddpm_steps=5_step_0000002.png"
    assert os.path.isfile(grid)
