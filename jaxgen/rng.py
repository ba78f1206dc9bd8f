"""Every random draw of a run descends from one root key through a named purpose.

The root is stored in the train state as uint32 [2] key data (a plain array Orbax saves like
any other leaf); `purpose_key` folds in the purpose, then an index (the step, a batch number).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PURPOSES = {"train": 0, "init": 1, "eval": 2, "sample": 3, "path_length": 4}


def root_key_data(seed: int) -> jax.Array:
    """uint32 [2]: the key data of `jax.random.key(seed)`."""
    return jax.random.key_data(jax.random.key(seed))


def as_key(key_data: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(key_data)


def purpose_key(root: jax.Array, purpose: str, index: int | jax.Array = 0) -> jax.Array:
    """root: a typed key -> the key of draw `index` of `purpose`."""
    return jax.random.fold_in(jax.random.fold_in(root, PURPOSES[purpose]), index)


def with_impl(key: jax.Array, impl: str) -> jax.Array:
    """A threefry key -> a key of PRNG implementation impl drawn from it (itself for
    "threefry"). "rbg" keys make their bits with XLA's RngBitGenerator, which costs far less
    than threefry's 20 rounds per word for the large dropout masks of a UNet; its bits depend
    on the backend and on how the array is partitioned, threefry's on neither."""
    if impl == "threefry":
        return key
    size = jax.random.key_data(jax.random.key(0, impl=impl)).shape
    return jax.random.wrap_key_data(jax.random.bits(key, size, jnp.uint32), impl=impl)
