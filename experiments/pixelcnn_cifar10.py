"""PixelCNN++ on CIFAR-10 with the paper's network (Salimans et al. 2017): 160 filters, five
gated blocks per resolution at 32, 16 and 8, ten logistics, dropout 0.5, Adam at 0.001, Polyak
averaging 0.9995; for accelerators (the paper: 2.92 bits/dim, 8 GPUs for about 5 days).

python -m jaxgen.train --config=experiments/pixelcnn_cifar10.py --workdir=runs/pixelcnn_cifar10
Differs from the paper's code: no weight normalisation or data-dependent initialisation, and
nearest upsampling + a shifted convolution in place of its transposed convolutions.
"""

from jaxgen.families.pixelcnn import default_config


def get_config():
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "cifar10"
    c.model.filters = 160
    c.model.num_resnet = 5
    c.model.num_resolutions = 3
    c.model.num_mixtures = 10
    c.model.dropout = 0.5
    c.train.num_steps = 500_000
    c.train.batch_size = 64
    c.train.learning_rate = 1e-3
    c.train.ema_decay = 0.9995
    c.train.log_every_steps = 1000
    c.eval.every_steps = 20_000
    c.eval.batch_size = 500
    c.eval.num_samples = 1000
    c.eval.sample_batch_size = 250
    c.sample.every_steps = 50_000
    c.checkpoint.every_steps = 5000
    return c
