"""VAE on scikit-learn's 8x8 digits: the default experiment, a few minutes on 2 CPU cores.

python -m jaxgen.train --config=experiments/vae_digits.py --workdir=runs/vae_digits
ARG (optional) picks the decoder: bernoulli (default), gaussian_fixed, gaussian_learned.
"""

from jaxgen.families.vae import default_config


def get_config(decoder: str = "bernoulli"):
    c = default_config(decoder)
    c.data.source = "digits"
    c.model.latent_dim = 8
    c.train.num_steps = 3000
    c.train.batch_size = 128
    c.train.log_every_steps = 100
    c.eval.every_steps = 500
    c.eval.batch_size = 360  # the whole test split (359) in one batch
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 500
    return c
