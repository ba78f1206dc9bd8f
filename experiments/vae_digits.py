"""VAE on scikit-learn's 8x8 digits: the default experiment, a few minutes on 2 CPU cores.

python -m jaxgen.train --config=experiments/vae_digits.py --workdir=runs/vae_digits
ARG (optional) picks the decoder: bernoulli (default), gaussian_fixed, gaussian_learned.
"""

from jaxgen.config import base_config


def get_config(decoder: str = "bernoulli"):
    c = base_config()
    c.family = "vae"
    c.data.source = "digits"
    # Bernoulli likelihoods are proper on binary pixels; Gaussian ones on dequantised pixels.
    c.data.binarize = decoder == "bernoulli"
    c.data.dequantize = decoder != "bernoulli"

    c.model.latent_dim = 8
    c.model.features = (32, 64)
    c.model.hidden = 256
    c.model.decoder = decoder
    c.model.decoder_std = 0.1
    c.model.beta = 1.0
    c.model.conditional = False

    c.train.num_steps = 3000
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.train.log_every_steps = 100

    c.eval.every_steps = 500
    c.eval.batch_size = 360
    c.eval.iwae_samples = 1000
    c.eval.iwae_chunk = 100
    c.sample.every_steps = 1000
    c.sample.num = 64
    c.checkpoint.every_steps = 500
    return c
