"""Learning-rate schedules (`train.lr_schedule`, `train.warmup_steps`, `train.lr_end_fraction`)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxgen.core import config as config_lib
from jaxgen.core import config_keys
from jaxgen.core.state import learning_rate_schedule, make_optimizer


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The base config's train section (every declared key at its default), overridden."""
    c = config_lib.base_config().train
    c.update({"learning_rate": 1e-3, "num_steps": 1000, **overrides})
    return c


def test_constant_without_warmup_is_a_float_and_keeps_the_old_optimiser_state():
    c = train_config()
    assert learning_rate_schedule(c) == 1e-3
    params = {"w": jnp.ones(3)}
    state = make_optimizer(c).init(params)
    old = optax.chain(optax.adamw(1e-3, weight_decay=0.0)).init(params)
    assert jax.tree.structure(state) == jax.tree.structure(old)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear"])
def test_schedules_follow_their_formulas(kind):
    peak, warmup, total, end = 1e-3, 100, 1000, 0.1
    schedule = learning_rate_schedule(train_config(lr_schedule=kind, warmup_steps=warmup,
                                                   lr_end_fraction=end))

    def expected(step):
        if step < warmup:
            return peak * step / warmup
        progress = (step - warmup) / (total - warmup)
        if kind == "constant":
            return peak
        if kind == "linear":
            return peak + (end * peak - peak) * progress
        return end * peak + (peak - end * peak) * 0.5 * (1 + math.cos(math.pi * progress))

    for step in (0, 1, 50, 99, 100, 101, 400, 550, 999, 1000):
        assert float(schedule(step)) == pytest.approx(expected(step), rel=1e-5, abs=1e-12), step


def test_the_optimiser_applies_the_scheduled_rate():
    # With a constant gradient Adam's bias-corrected moments are 1 (up to float32 rounding of
    # the bias corrections), so every update is the step's rate itself.
    c = train_config(lr_schedule="linear", warmup_steps=10, num_steps=20)
    optimizer = make_optimizer(c)
    params = {"w": jnp.zeros(())}
    state = optimizer.init(params)
    schedule = learning_rate_schedule(c)
    for step in range(20):
        updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
        np.testing.assert_allclose(-float(updates["w"]), float(schedule(step)), rtol=1e-4,
                                   atol=1e-12)
    assert float(schedule(5)) == pytest.approx(5e-4) and float(schedule(15)) == pytest.approx(5e-4)


def test_an_unknown_schedule_is_a_config_error():
    from jaxgen.families import vae
    c = vae.default_config()
    c.train.lr_schedule = "exponential"
    with pytest.raises(config_lib.ConfigError, match="lr_schedule"):
        config_lib.check_keys(c, config_keys.BASE_KEYS)
