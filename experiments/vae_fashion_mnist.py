"""VAE on Fashion-MNIST (28x28): tfds, or Debian's IDX files offline.

python -m jaxgen.train --config=experiments/vae_fashion_mnist.py --workdir=runs/vae_fmnist
ARG (optional) picks the decoder: bernoulli (default), gaussian_fixed, gaussian_learned.
"""

from jaxgen.config import base_config


def get_config(decoder: str = "bernoulli"):
    c = base_config()
    c.family = "vae"
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.data.binarize = decoder == "bernoulli"
    c.data.dequantize = decoder != "bernoulli"

    c.model.latent_dim = 16
    c.model.features = (32, 64)
    c.model.hidden = 256
    c.model.decoder = decoder
    c.model.decoder_std = 0.1
    c.model.beta = 1.0
    c.model.conditional = False

    c.train.num_steps = 10000
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.train.log_every_steps = 200

    c.eval.every_steps = 2000
    c.eval.batch_size = 500
    c.eval.iwae_samples = 1000
    c.eval.iwae_chunk = 50
    c.sample.every_steps = 2000
    c.sample.num = 64
    c.checkpoint.every_steps = 1000
    return c
