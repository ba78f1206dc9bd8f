"""A history of generated images for the discriminator (Shrivastava et al. 2017, sec. 2.3;
CycleGAN keeps 50, Zhu et al. 2017, sec. 4): D sees a mix of the newest fakes and older
ones, which damps the oscillation of the two players.

The pool is a pytree (images [size, H, W, C], count int32 []), part of the train state, so a
checkpoint holds it and a resumed run draws exactly what an uninterrupted one would. Query
semantics are those of the reference code (pytorch-CycleGAN-and-pix2pix, util/image_pool.py),
image by image in batch order: while the pool is not full, an image is stored and returned;
once full, with probability 1/2 a random stored image is returned and the new one takes its
place, else the new image is returned and the pool kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SWAP_PROBABILITY = 0.5


def init(size: int, image_shape: tuple[int, ...]) -> dict[str, jax.Array]:
    """An empty pool of `size` images of image_shape [H, W, C]."""
    return {"images": jnp.zeros((size, *image_shape), jnp.float32),
            "count": jnp.zeros((), jnp.int32)}


def query(pool: dict[str, jax.Array], images: jax.Array, rng: jax.Array
          ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(images for the discriminator [B, H, W, C], the updated pool); images [B, H, W, C]."""
    size = pool["images"].shape[0]

    def one(carry, inputs):
        stored, count = carry
        image, key = inputs
        swap_key, index_key = jax.random.split(key)
        full = count >= size
        swap = full & (jax.random.uniform(swap_key) < SWAP_PROBABILITY)
        index = jnp.where(full, jax.random.randint(index_key, (), 0, size), count)
        old = stored[index]
        stored = stored.at[index].set(jnp.where(full & ~swap, old, image))
        returned = jnp.where(swap, old, image)
        return (stored, jnp.minimum(count + 1, size)), returned

    keys = jax.random.split(rng, images.shape[0])
    (stored, count), returned = jax.lax.scan(one, (pool["images"], pool["count"]),
                                             (images.astype(jnp.float32), keys))
    return returned, {"images": stored, "count": count}
