"""GAN losses from discriminator logits, in numerically stable form (Goodfellow et al. 2014).

D(x) = sigmoid(l). With softplus(a) = log(1 + e^a):
  -log D(x)     = softplus(-l)      -log(1 - D(x)) = softplus(l)
Every function takes logits [B] and returns the mean loss the named player minimises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GENERATOR_LOSSES = ("minimax", "non_saturating", "hinge")


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       kind: str = "non_saturating") -> jax.Array:
    """-E[log D(x)] - E[log(1 - D(G(z)))] (minimax and non-saturating GANs share it);
    hinge (Lim & Ye 2017): E[relu(1 - l_real)] + E[relu(1 + l_fake)]."""
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str = "non_saturating") -> jax.Array:
    """minimax: E[log(1 - D(G(z)))], the saturating original, whose gradient vanishes when D
    rejects the samples confidently; non_saturating: -E[log D(G(z))] (Goodfellow et al. 2014,
    sec. 3); hinge: -E[l_fake]."""
    if kind == "minimax":
        return -jnp.mean(jax.nn.softplus(fake_logits))
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    raise ValueError(f"unknown generator loss '{kind}' (known: {', '.join(GENERATOR_LOSSES)})")
