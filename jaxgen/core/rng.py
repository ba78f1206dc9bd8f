"""Every random draw of a run descends from one root key through a named purpose.

The root is stored in the train state as uint32 [2] key data (a plain array Orbax saves like
any other leaf); `purpose_key` folds in the purpose, then an index (the step, a batch number).

Keys are of `THREEFRY`: JAX's threefry2x32 (the same key data, the same bits for every draw,
checked by tests/test_rng.py) with the hash written out as 20 elementwise rounds on CPU. There
JAX lowers threefry as a 5-iteration `fori_loop` over the whole array, which XLA:CPU compiles
on its own (about 0.3 s per dropout mask of a UNet) and runs about 4x slower than the fused
rounds (`python -m benchmarks.threefry_unrolled`).
"""

from __future__ import annotations

import math

import jax
import jax.extend.random as jex
import jax.numpy as jnp
import numpy as np
from jax import lax

PURPOSES = {"train": 0, "init": 1, "eval": 2, "sample": 3, "path_length": 4}

# Threefry-2x32's rotation constants, alternating by group of four rounds (Salmon et al.
# 2011, "Parallel random numbers: as easy as 1, 2, 3", table 4), and its key-schedule parity.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(bits)) | lax.shift_right_logical(x, np.uint32(32 - bits))


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011): key (k1, k2) uint32 [], counter
    words (x1, x2) uint32 [...] -> two uint32 [...] words; JAX's hash, unrolled."""
    keys = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + keys[0], x2 + keys[1]
    for group in range(5):  # 5 groups of 4 rounds, a key injection after each
        for bits in _ROTATIONS[group % 2]:
            x1 = x1 + x2
            x2 = _rotate_left(x2, bits) ^ x1
        x1 = x1 + keys[(group + 1) % 3]
        x2 = x2 + keys[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def _as_jax_threefry(key_data: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(key_data, impl="threefry2x32")


def _jax_random_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[bit_width]
    return jax.random.bits(_as_jax_threefry(key_data), shape, dtype)


def _unrolled_random_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]
                          ) -> jax.Array:
    """JAX's partitionable threefry bits (`jax_threefry_partitionable`, the default): word i of
    the array (row-major) hashes the 64-bit counter i (here < 2^32); the bits are the two
    words' xor."""
    # The row-major index from one iota per axis, so that a sharded axis stays sharded.
    strides = np.cumprod((1,) + shape[:0:-1])[::-1]
    counter = sum(lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
                  for axis, stride in enumerate(strides))
    words = threefry2x32(key_data[0], key_data[1], jnp.zeros(shape, jnp.uint32), counter)
    # JAX's loop hands its two words to the rest of the program as finished arrays; the
    # barrier keeps them so, so that XLA fuses what follows as it did: the same program
    # around the hash, hence the same floating-point results, not only the same bits.
    high, low = lax.optimization_barrier(words)
    bits = high ^ low
    return bits if bit_width == 32 else bits.astype({8: jnp.uint8, 16: jnp.uint16}[bit_width])


def _random_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """The unrolled hash where JAX's lowering is the loop (CPU), JAX's own code elsewhere
    (GPU and TPU lower the hash unrolled already) and for counters past 32 bits, 64-bit words,
    scalars and the legacy scheme."""
    if (bit_width == 64 or math.prod(shape) >= 2 ** 32 or not shape
            or not jax.config.jax_threefry_partitionable):
        return _jax_random_bits(key_data, bit_width, shape)
    return lax.platform_dependent(
        key_data, cpu=lambda k: _unrolled_random_bits(k, bit_width, shape),
        default=lambda k: _jax_random_bits(k, bit_width, shape))


THREEFRY = jex.define_prng_impl(
    key_shape=(2,),
    seed=lambda seed: jax.random.key_data(jax.random.key(seed, impl="threefry2x32")),
    split=lambda key_data, shape: jax.random.key_data(
        jax.random.split(_as_jax_threefry(key_data), shape)),
    random_bits=_random_bits,
    fold_in=lambda key_data, data: jax.random.key_data(
        jax.random.fold_in(_as_jax_threefry(key_data), data)),
    name="threefry2x32_unrolled", tag="tfu")


def root_key_data(seed: int) -> jax.Array:
    """uint32 [2]: the key data of `jax.random.key(seed)`."""
    return jax.random.key_data(jax.random.key(seed, impl=THREEFRY))


def key(seed: int | jax.Array) -> jax.Array:
    """The typed key of `jax.random.key(seed)`, of THREEFRY."""
    return as_key(root_key_data(seed))


def as_key(key_data: jax.Array) -> jax.Array:
    """uint32 [2] key data -> a typed key of THREEFRY."""
    return jax.random.wrap_key_data(key_data, impl=THREEFRY)


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
