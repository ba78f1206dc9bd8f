"""DDPM on Fashion-MNIST (28x28), sized for 2 CPU cores: 3,000 steps take ~40 min there (169-191
images/s); docs/diffusion.md's guidance figures continue the "cfg" variant to 9,000 steps
(cfg_guidance_fashion_mnist.py). On a GPU, raise model.channels to 64 and train.num_steps to 20000.

python -m jaxgen.train --config=experiments/ddpm_fashion_mnist.py --workdir=runs/ddpm_fmnist
ARG (optional): "cfg" trains a class-conditional model with label dropout 0.1 for
classifier-free guidance (sample with --config.sample.guidance_scale=W).
"""

from jaxgen.families.diffusion import default_config


def get_config(variant: str = ""):
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.channels = 16
    c.model.channel_mults = (1, 2, 2)
    c.model.num_res_blocks = 1
    c.model.attention_resolutions = (7,)
    c.model.dropout = 0.1
    c.model.num_groups = 8
    c.model.num_timesteps = 1000
    if variant == "cfg":
        c.model.conditional = True
        c.model.label_dropout = 0.1
    c.train.num_steps = 3000
    c.train.batch_size = 128
    c.train.learning_rate = 5e-4
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 200
    c.eval.every_steps = 3000
    c.eval.batch_size = 500
    c.eval.num_examples = 1000  # the bound costs vlb_timesteps passes per image
    c.eval.vlb_timesteps = 100
    c.eval.num_samples = 10000
    c.sample.every_steps = 3000
    c.checkpoint.every_steps = 1000
    return c
