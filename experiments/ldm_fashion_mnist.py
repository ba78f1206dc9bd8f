"""Latent diffusion on Fashion-MNIST: diffusion on the 16-D codes of a trained autoencoder.

python -m jaxgen.train --config=experiments/ae_fashion_mnist.py --workdir=runs/ae_fmnist
python -m jaxgen.train --config=experiments/ldm_fashion_mnist.py --workdir=runs/ldm_fmnist \\
    --config.model.autoencoder_workdir=runs/ae_fmnist
ARG (optional): "cfg" trains a class-conditional model with label dropout 0.1.
"""

from jaxgen.families.latent_diffusion import default_config


def get_config(variant: str = ""):
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.autoencoder_workdir = "runs/ae_fmnist"
    c.model.channels = 256
    c.model.num_res_blocks = 3
    c.model.dropout = 0.0
    c.model.num_groups = 32
    c.model.num_timesteps = 1000
    if variant == "cfg":
        c.model.conditional = True
        c.model.label_dropout = 0.1
    c.train.num_steps = 3000  # the pixel model's budget (ddpm_fashion_mnist.py)
    c.train.batch_size = 256
    c.train.learning_rate = 1e-3
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 200
    c.eval.every_steps = 3000
    c.eval.batch_size = 500
    c.eval.num_samples = 10000
    c.sample.every_steps = 3000
    c.checkpoint.every_steps = 1000
    return c
