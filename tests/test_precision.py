"""Mixed precision: float32 master weights, networks in bfloat16, float32 losses."""

import collections

import jax
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.training import trainer

VAE = ["--config=experiments/vae_digits.py", "--config.train.log_every_steps=50",
       "--config.eval.iwae_samples=0"]


def _trained_vae_losses(tmp_path, dtype: str, steps: int = 100):
    flags, overrides = cli.parse(cli.parser(""), [*VAE, f"--workdir={tmp_path / dtype}",
                                                  f"--config.train.compute_dtype={dtype}"])
    config, splits, family = cli.prepare(flags, overrides)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    losses = [t.evaluate(state)["neg_elbo"]]
    for step in range(steps):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
    losses.append(t.evaluate(state)["neg_elbo"])
    return np.array(losses), state


def test_bfloat16_training_follows_the_float32_curve(tmp_path):
    f32, _ = _trained_vae_losses(tmp_path, "float32")
    bf16, state = _trained_vae_losses(tmp_path, "bfloat16")
    # Master weights and optimiser moments stay float32.
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))
              if np.issubdtype(x.dtype, np.floating)}
    assert dtypes == {np.dtype("float32")}
    assert f32[1] < 0.7 * f32[0] and bf16[1] < 0.7 * bf16[0]
    # Measured: test -ELBO 25.25 (float32) and 25.29 (bfloat16) nats after 300 steps;
    # bfloat16's 8-bit mantissa moves the curve by well under 1%.
    np.testing.assert_allclose(bf16[1], f32[1], rtol=0.01)


def test_bfloat16_runs_every_convolution_and_matmul_of_a_diffusion_step_in_bfloat16(tmp_path):
    from tests.test_diffusion import TINY_DDPM
    flags, overrides = cli.parse(cli.parser(""), [*TINY_DDPM, f"--workdir={tmp_path}",
                                                  "--config.train.compute_dtype=bfloat16",
                                                  "--config.model.learn_variance=True"])
    config, splits, family = cli.prepare(flags, overrides)
    t = trainer.Trainer(config, family, splits)
    state = t.abstract_state()  # traced, never compiled
    batch = t.global_batch(t.stream.batch_at(0))
    jaxpr = t.step_fn.trace(state, batch).jaxpr.jaxpr
    found = collections.Counter()

    def walk(j):
        for eqn in j.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                found[str(eqn.outvars[0].aval.dtype)] += 1
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", value)
                if hasattr(inner, "eqns"):
                    walk(inner)
    walk(jaxpr)
    assert set(found) == {"bfloat16"} and found["bfloat16"] > 50
    # The losses come back in float32.
    loss = jax.eval_shape(lambda p: family.per_example_loss(p, batch, jax.random.key(0), False),
                          state.params)
    assert loss.dtype == np.float32


def test_an_unknown_compute_dtype_is_a_config_error(tmp_path):
    flags, overrides = cli.parse(cli.parser(""), [*VAE, f"--workdir={tmp_path}",
                                                  "--config.train.compute_dtype=float16"])
    with pytest.raises(Exception, match="train.compute_dtype"):
        cli.prepare(flags, overrides)


def test_rbg_dropout_masks_come_from_the_rng_bit_generator_and_repeat_for_a_key(tmp_path):
    """train.dropout_prng=rbg (cheaper masks on GPU): only the masks' generator changes."""
    from tests.test_diffusion import TINY_DDPM
    losses = {}
    for impl in ("threefry", "rbg"):
        flags, overrides = cli.parse(cli.parser(""), [
            *TINY_DDPM, f"--workdir={tmp_path / impl}", "--config.model.dropout=0.5",
            f"--config.train.dropout_prng={impl}"])
        config, splits, family = cli.prepare(flags, overrides)
        t = trainer.Trainer(config, family, splits)
        # Off the zero-initialised output layer, through which no mask would show.
        params = jax.tree.map(lambda p: p + 0.05, t.init_state().params)
        batch = t.global_batch(t.stream.batch_at(0))
        loss = jax.jit(lambda p, key: family.per_example_loss(p, batch, key, True))
        key = jax.random.key(3)
        assert ("rng_bit_generator" in loss.lower(params, key).as_text()) == (impl == "rbg")
        losses[impl] = np.asarray(loss(params, key))
        np.testing.assert_array_equal(losses[impl], loss(params, key))
        assert np.isfinite(losses[impl]).all()
    # The same parameters, noise and timesteps: the losses differ by the masks alone.
    assert not np.allclose(losses["threefry"], losses["rbg"])
