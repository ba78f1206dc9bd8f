"""DDPM on scikit-learn's 8x8 digits, sized for 2 CPU cores.

python -m jaxgen.train --config=experiments/ddpm_digits.py --workdir=runs/ddpm_digits
ARG (optional): "cfg" trains a class-conditional model with label dropout 0.1 for
classifier-free guidance (sample with --config.sample.guidance_scale=W). "likelihood" is the
recipe for the variational bound: learned variances with the hybrid loss (Nichol & Dhariwal
2021) and T = 20, so that the first step's noise (std sqrt(beta_1) = 0.089) sits just below the
0.125-wide bins of 17 grey levels, as the cosine schedule's offset puts it below 8-bit bins at
T = 1000; finer steps only add terms in which the network must round x_t to the grid.
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
    if variant == "cfg":
        c.model.conditional = True
        c.model.label_dropout = 0.1
    elif variant == "likelihood":
        c.model.learn_variance = True
        c.model.num_timesteps = 20
        c.eval.vlb_timesteps = 0  # all 20 terms
        c.sample.steps = 20
    elif variant:
        raise ValueError(f"unknown variant '{variant}' (cfg, likelihood)")
    return c
