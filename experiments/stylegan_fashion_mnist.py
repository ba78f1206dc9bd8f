"""StyleGAN2 on Fashion-MNIST padded to 32x32, sized for 2 CPU cores: an 8-layer mapping
network to a 128-wide W, synthesis widths 128-128-64-32 from 4x4 to 32x32, a residual
discriminator with minibatch standard deviation, the non-saturating loss with lazy R1 (gamma 1
every 16 steps), style mixing at 0.9, EMA of the generator. The batch, 64, and the number of
steps are those of gan_fashion_mnist.py, so the two compare at the same images seen.

python -m jaxgen.train --config=experiments/stylegan_fashion_mnist.py --workdir=runs/stylegan
python -m jaxgen.sample --workdir=runs/stylegan     # style mixing, truncation, noise, W vs Z
python -m jaxgen.evaluate --workdir=runs/stylegan   # FID, KID, precision/recall, PPL in Z and W
ARG (optional): "conditional": a class-conditional model (label embedding into the mapping
network, projection discriminator).
On a GPU: --config.model.w_dim=512 --config.model.generator_widths='(512,512,256,128)'
--config.model.discriminator_widths='(128,256,512,512)' --config.model.pl_weight=2.
"""

from jaxgen.families.stylegan import default_config


def get_config(variant: str = ""):
    if variant not in ("", "conditional"):
        raise ValueError(f"unknown variant '{variant}' (known: conditional)")
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.data.pad_to = 32
    c.model.latent_dim = 128
    c.model.w_dim = 128
    c.model.generator_widths = (128, 128, 64, 32)
    c.model.discriminator_widths = (32, 64, 128, 128)
    c.model.conditional = variant == "conditional"
    c.train.num_steps = 3000
    c.train.batch_size = 64
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.eval.batch_size = 500
    c.eval.num_samples = 10000
    c.eval.track_samples = 1000
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 1000
    return c
