"""CycleGAN on scikit-learn's 8x8 digits, a minute on a laptop: domain A is one half of the
digits, domain B the other half inverted (cyclegan_fashion_invert.py's benchmark on the
embedded dataset; the true translation is known, `jaxgen.evaluate` scores it).

python -m jaxgen.train --config=experiments/cyclegan_digits.py --workdir=runs/cg_digits
python -m jaxgen.sample --workdir=runs/cg_digits
python -m jaxgen.evaluate --workdir=runs/cg_digits
"""

from jaxgen.families.cyclegan import default_config


def get_config():
    c = default_config()
    for domain, part in ((c.data.domain_a, 0), (c.data.domain_b, 1)):
        domain.source, domain.name, domain.part = "digits", "", (part, 2)
    c.data.domain_b.transform = "invert"
    # 8 -> 4 -> 8: instance normalisation needs enough pixels per feature map (4x4 here).
    c.model.downsamplings = 1
    c.model.generator_width = 16
    c.model.generator_blocks = 2
    c.model.discriminator_widths = (16, 32)
    c.train.batch_size = 32
    c.train.num_steps = 1000
    c.train.decay_start_step = c.train.num_steps // 2
    c.train.log_every_steps = 50
    c.eval.every_steps = 500
    c.eval.num_samples = 300
    c.eval.sample_batch_size = 100
    c.sample.every_steps = 500
    c.sample.num = 16
    c.checkpoint.every_steps = 500
    return c
