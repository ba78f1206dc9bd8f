"""GAN losses from discriminator logits, in numerically stable form (Goodfellow et al. 2014).

D(x) = sigmoid(l). With softplus(a) = log(1 + e^a):
  -log D(x)     = softplus(-l)      -log(1 - D(x)) = softplus(l)
Every function takes logits [B] and returns the mean loss the named player minimises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GENERATOR_LOSSES = ("minimax", "non_saturating", "hinge")


def least_squares_discriminator_loss(real_outputs: jax.Array,
                                     fake_outputs: jax.Array) -> jax.Array:
    """LSGAN (Mao et al. 2017, eq. 9 with a=0, b=1), halved as CycleGAN does so D learns at
    half G's pace (Zhu et al. 2017, sec. 4): 0.5 (E[(D(x) - 1)^2] + E[D(G(z))^2]). D's
    outputs are scores, not logits: outputs of any shape (PatchGAN: [B, h, w])."""
    return 0.5 * (jnp.mean(jnp.square(real_outputs - 1.0)) + jnp.mean(jnp.square(fake_outputs)))


def least_squares_generator_loss(fake_outputs: jax.Array) -> jax.Array:
    """LSGAN's generator loss (Mao et al. 2017, eq. 9 with c=1): E[(D(G(z)) - 1)^2]."""
    return jnp.mean(jnp.square(fake_outputs - 1.0))


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
