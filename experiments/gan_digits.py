"""DCGAN on scikit-learn's 8x8 digits, sized for 2 CPU cores, with the loss x regulariser sweep.

python -m jaxgen.train --config=experiments/gan_digits.py --workdir=runs/gan_digits
python -m jaxgen.sweep --config=experiments/gan_digits.py --workdir=runs/gan_digits_sweep
python -m jaxgen.report runs/gan_digits_sweep --curve=recall --at_steps=500,1000,2000
ARG (optional): LOSS[,REGULARISER] e.g. "minimax" or "non_saturating,none" (regulariser: none |
r1 | spectral_norm). The default, "non_saturating,r1", is the sweep's recipe that keeps every
class (without R1 the non-saturating GAN collapsed to one digit by step 2,000); the other
variants are the ablation's.
"""

from jaxgen.cli import sweep
from jaxgen.families.gan import default_config

# Named multi-key options: each regulariser is a setting of several keys.
REGULARISERS = {
    "none": {"model.r1_gamma": 0.0, "model.spectral_norm": False},
    "r1": {"model.r1_gamma": 1.0, "model.spectral_norm": False},
    "spectral_norm": {"model.r1_gamma": 0.0, "model.spectral_norm": True},
}


def apply_variant(c, variant: str):
    loss, _, regulariser = variant.partition(",")
    if loss:
        c.model.loss = loss
    for key, value in REGULARISERS[regulariser or "none"].items():
        setattr(c.model, key.split(".")[1], value)
    return c


def get_config(variant: str = "non_saturating,r1"):
    c = default_config()
    c.data.source = "digits"
    c.model.latent_dim = 32
    c.model.generator_features = (64, 32)
    c.model.discriminator_features = (32, 64)
    c.train.num_steps = 2000
    c.train.batch_size = 128
    c.train.log_every_steps = 50
    c.eval.every_steps = 250
    c.eval.batch_size = 360
    c.eval.num_samples = 2000
    c.eval.track_samples = 1000  # recall, coverage... over training
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 1000
    return apply_variant(c, variant)


def get_sweep():
    """Mode collapse: the two losses of the lecture x the regularisers x three seeds (hinge, the
    third loss, trains with `:hinge`)."""
    return sweep.grid({
        "model.loss": ["minimax", "non_saturating"],
        "regulariser": REGULARISERS,
        "seed": [0, 1, 2],
    })
