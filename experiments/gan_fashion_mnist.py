"""DCGAN on Fashion-MNIST (28x28), non-saturating loss with the R1 penalty, sized for 2 CPU cores.

python -m jaxgen.train --config=experiments/gan_fashion_mnist.py --workdir=runs/gan_fmnist
python -m jaxgen.evaluate --workdir=runs/gan_fmnist
ARG (optional): LOSS[,REGULARISER] as in gan_digits.py, e.g. "non_saturating,none".
"""

from jaxgen.core.config import sibling
from jaxgen.families.gan import default_config

apply_variant = sibling(__file__, "gan_digits").apply_variant


def get_config(variant: str = "non_saturating,r1"):
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.latent_dim = 64
    c.model.generator_features = (64, 32)
    c.model.discriminator_features = (32, 64)
    c.train.num_steps = 3000
    c.train.batch_size = 64
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.eval.batch_size = 500
    c.eval.num_samples = 10000
    c.eval.track_samples = 1000
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 1000
    return apply_variant(c, variant)
