"""DDPM on scikit-learn's 8x8 digits, sized for 2 CPU cores.

python -m jaxgen.train --config=experiments/ddpm_digits.py --workdir=runs/ddpm_digits
ARG (optional): "cfg" trains a class-conditional model with label dropout 0.1 for
classifier-free guidance (sample with --config.sample.guidance_scale=W).
"""

from jaxgen.families.diffusion import default_config


def get_config(variant: str = ""):
    c = default_config()
    c.data.source = "digits"
    c.model.channels = 32
    c.model.channel_mults = (1, 2)
    c.model.num_res_blocks = 1
    c.model.attention_resolutions = (4,)
    c.model.dropout = 0.0
    c.model.num_groups = 8
    c.model.num_timesteps = 1000
    if variant == "cfg":
        c.model.conditional = True
        c.model.label_dropout = 0.1
    c.train.num_steps = 4000
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.eval.batch_size = 360
    c.eval.vlb_timesteps = 50
    c.eval.num_samples = 2000
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 500
    return c
