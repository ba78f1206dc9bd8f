"""DDPM on CIFAR-10 with the architecture of Ho et al. 2020 (35.7M parameters), for GPU/TPU.

python -m jaxgen.train --config=experiments/ddpm_cifar10.py --workdir=runs/ddpm_cifar10
The paper trains 800k steps at batch 128, lr 2e-4 after a 5,000-step linear warmup, gradient
clipping at norm 1, EMA 0.9999, linear noise schedule; this config keeps the network and the
optimiser and uses the cosine noise schedule, jaxgen's default (--config.model.schedule=linear
for the paper's).
"""

from jaxgen.families.diffusion import default_config


def get_config():
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "cifar10"
    c.model.channels = 128
    c.model.channel_mults = (1, 2, 2, 2)
    c.model.num_res_blocks = 2
    c.model.attention_resolutions = (16,)
    c.model.dropout = 0.1
    c.model.num_groups = 32
    c.train.num_steps = 800_000
    c.train.batch_size = 128
    c.train.learning_rate = 2e-4
    c.train.warmup_steps = 5000
    c.train.ema_decay = 0.9999
    c.train.log_every_steps = 1000
    c.eval.every_steps = 50_000
    c.eval.batch_size = 500
    c.eval.vlb_timesteps = 100
    c.eval.num_samples = 10_000
    c.sample.every_steps = 10_000
    c.checkpoint.every_steps = 10_000
    return c
