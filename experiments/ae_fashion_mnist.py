"""Deterministic autoencoder on Fashion-MNIST; `jaxgen.evaluate` sets its reconstruction
error beside PCA's at the same latent dimension.

python -m jaxgen.train --config=experiments/ae_fashion_mnist.py --workdir=runs/ae_fmnist
ARG (optional): the latent dimension (default 16).
"""

from jaxgen.families.ae import default_config


def get_config(latent_dim: str = "16"):
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.latent_dim = int(latent_dim)
    c.train.num_steps = 6000
    c.train.batch_size = 128
    c.train.log_every_steps = 200
    c.eval.every_steps = 2000
    c.eval.batch_size = 500
    c.sample.every_steps = 2000
    c.checkpoint.every_steps = 1000
    return c
