"""GAN losses against float64 NumPy references, and the lecture's claim about their gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.losses import gan as gan_losses

LOGITS = np.array([-30.0, -8.0, -1.5, 0.0, 0.7, 6.0, 30.0])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference(kind, real, fake):
    """The textbook formulas on D = sigmoid(l), in float64."""
    d_real, d_fake = _sigmoid(real), _sigmoid(fake)
    if kind == "hinge":
        disc = np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake))
        gen = -np.mean(fake)
    else:
        disc = -np.mean(np.log(d_real)) - np.mean(np.log1p(-d_fake))
        gen = np.mean(np.log1p(-d_fake)) if kind == "minimax" else -np.mean(np.log(d_fake))
    return disc, gen


@pytest.mark.parametrize("kind", gan_losses.GENERATOR_LOSSES)
def test_loss_values_match_the_textbook_formulas(kind):
    # Within [-8, 6] the float64 textbook forms are exact enough to be the reference.
    real, fake = LOGITS[1:-1], LOGITS[1:-1][::-1].copy()
    disc, gen = _reference(kind, real, fake)
    ours_disc = gan_losses.discriminator_loss(jnp.asarray(real), jnp.asarray(fake), kind)
    assert float(ours_disc) == pytest.approx(disc, rel=1e-5)
    assert float(gan_losses.generator_loss(jnp.asarray(fake), kind)) == pytest.approx(gen,
                                                                                     rel=1e-5)


@pytest.mark.parametrize("kind", gan_losses.GENERATOR_LOSSES)
def test_gradients_match_the_analytic_ones_and_stay_finite_at_extreme_logits(kind):
    fake = jnp.asarray(LOGITS, jnp.float32)
    grad = np.asarray(jax.grad(lambda logits: gan_losses.generator_loss(logits, kind))(fake))
    expected = {"minimax": -_sigmoid(LOGITS), "non_saturating": -_sigmoid(-LOGITS),
                "hinge": -np.ones_like(LOGITS)}[kind] / len(LOGITS)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-12)
    disc_grad = jax.grad(lambda r, f: gan_losses.discriminator_loss(r, f, kind),
                         argnums=(0, 1))(fake, fake)
    assert all(np.all(np.isfinite(g)) for g in disc_grad)


def test_non_saturating_gradient_dominates_when_the_discriminator_rejects_the_samples():
    """D(G(z)) ~ 0 (logit -8, D = 3e-4): the minimax generator's gradient vanishes, the
    non-saturating one does not (Goodfellow et al. 2014, sec. 3)."""
    rejected = jnp.full((16,), -8.0)

    def grad_norm(kind):
        return float(jnp.linalg.norm(jax.grad(
            lambda logits: gan_losses.generator_loss(logits, kind))(rejected)))

    assert grad_norm("non_saturating") > 1000 * grad_norm("minimax")
    with pytest.raises(ValueError, match="unknown generator loss"):
        gan_losses.generator_loss(rejected, "wasserstein")
