"""The noisy-image classifier p(y | x_t, t) that guides ddpm_digits (classifier guidance).

python -m jaxgen.train --config=experiments/guidance_classifier_digits.py --workdir=runs/clf_digits
python -m jaxgen.sample --workdir=runs/ddpm_digits \\
    --config.sample.classifier_workdir=runs/clf_digits --config.sample.classifier_scale=2
Its schedule and T must match the diffusion model's (checked when sampling).
"""

from jaxgen.families.classifier import noisy_default_config


def get_config():
    c = noisy_default_config()
    c.data.source = "digits"
    c.model.features = (32, 64)
    c.model.schedule = "cosine"
    c.model.num_timesteps = 1000
    c.train.num_steps = 3000
    c.train.learning_rate = 1e-3
    c.eval.batch_size = 360
    c.eval.every_steps = 500
    c.checkpoint.every_steps = 500
    return c
