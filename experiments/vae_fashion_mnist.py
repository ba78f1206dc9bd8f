"""VAE on Fashion-MNIST (28x28): tfds, or Debian's IDX files offline.

python -m jaxgen.train --config=experiments/vae_fashion_mnist.py --workdir=runs/vae_fmnist
ARG (optional) picks the decoder: bernoulli (default), gaussian_fixed, gaussian_learned.
"""

from jaxgen.families.vae import default_config


def get_config(decoder: str = "bernoulli"):
    c = default_config(decoder)
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.latent_dim = 16
    c.train.num_steps = 10000
    c.train.batch_size = 128
    c.train.log_every_steps = 200
    c.eval.every_steps = 2000
    c.eval.batch_size = 500
    c.sample.every_steps = 2000
    c.checkpoint.every_steps = 1000
    return c
