"""PixelCNN++ on scikit-learn's 8x8 digits (17 grey levels, embedded): minutes on 2 CPU cores.

python -m jaxgen.train --config=experiments/pixelcnn_digits.py --workdir=runs/pixelcnn_digits
A small network (two resolutions, 8x8 and 4x4); the exact test NLL is logged in bits/dim
beside the uniform log2(17) = 4.09 and the per-pixel histogram's 2.42.
"""

from jaxgen.families.pixelcnn import default_config


def get_config():
    c = default_config()
    c.data.source = "digits"
    c.model.filters = 32
    c.model.num_resnet = 2
    c.model.num_resolutions = 2
    c.model.num_mixtures = 5
    c.model.dropout = 0.1
    c.train.num_steps = 2000
    c.train.batch_size = 64
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 100
    c.eval.every_steps = 500
    c.eval.batch_size = 360  # the whole test split (359) in one batch
    c.eval.num_samples = 1000
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 500
    return c
