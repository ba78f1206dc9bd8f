"""jaxgen's keys (rng.THREEFRY) draw JAX's threefry bits, and programs built on them compute
what programs on JAX's own keys compute, bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.core import rng
from jaxgen.training import trainer

DRAWS = {
    "bits": lambda k, shape: jax.random.bits(k, shape),
    "bits8": lambda k, shape: jax.random.bits(k, shape, jnp.uint8),
    "uniform": lambda k, shape: jax.random.uniform(k, shape),
    "normal": lambda k, shape: jax.random.normal(k, shape),
    "bernoulli": lambda k, shape: jax.random.bernoulli(k, 0.3, shape),
    "randint": lambda k, shape: jax.random.randint(k, shape, 0, 1000),
    "split": lambda k, shape: jax.random.key_data(jax.random.split(k, shape)),
    "fold_in": lambda k, shape: jax.random.key_data(jax.random.fold_in(k, 5)),
}


@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 5)])
def test_threefry_keys_draw_the_bits_of_jax_threefry(shape):
    reference = jax.random.key(7)
    ours = rng.as_key(jax.random.key_data(reference))
    np.testing.assert_array_equal(rng.root_key_data(7), jax.random.key_data(reference))
    assert jax.random.key_impl(ours) != jax.random.key_impl(reference)
    for name, draw in DRAWS.items():
        for f in (draw, jax.jit(draw, static_argnums=1)):
            np.testing.assert_array_equal(f(ours, shape), f(reference, shape), err_msg=name)
    # One key per example, as samplers draw.
    keys = jax.random.split(reference, 3)
    batched = jax.vmap(lambda k: jax.random.normal(k, shape))
    np.testing.assert_array_equal(batched(rng.as_key(jax.random.key_data(keys))),
                                  batched(keys))


def test_a_train_step_on_jaxgen_keys_is_that_on_jax_keys_bit_for_bit(tmp_path, monkeypatch):
    """The hash is unrolled and kept apart from what follows (an optimisation barrier), so
    the dropout masks, noise and timesteps are the same and XLA fuses the rest as before:
    parameters after two steps equal to the last bit."""
    from tests.test_diffusion import TINY_DDPM
    params = {}
    for impl in ("jaxgen", "jax"):
        if impl == "jax":
            monkeypatch.setattr(rng, "THREEFRY", "threefry2x32")
        flags, overrides = cli.parse(cli.parser(""), [
            *TINY_DDPM, f"--workdir={tmp_path / impl}", "--config.model.dropout=0.3"])
        config, splits, family = cli.prepare(flags, overrides)
        t = trainer.Trainer(config, family, splits)
        state = t.init_state()
        for step in range(2):
            state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
        params[impl] = jax.tree.leaves(state.params)
    assert len(params["jaxgen"]) == len(params["jax"])
    for ours, reference in zip(params["jaxgen"], params["jax"]):
        np.testing.assert_array_equal(ours, reference)
