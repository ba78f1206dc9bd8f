"""PixelCNN++ on Fashion-MNIST (28x28, 256 levels), sized for a CPU: three resolutions (28, 14,
7) of 32 filters, one gated block each (1.1 GFLOP per training image). On a GPU, raise
model.filters to 160 and model.num_resnet to 5 (the paper's CIFAR-10 network, ~25x the FLOPs)
and train.num_steps.

python -m jaxgen.train --config=experiments/pixelcnn_fashion_mnist.py --workdir=runs/pixelcnn_fmnist
Sampling draws 784 pixels one after another: the default sampler (`sample.sampler=fast`) runs
the u stream once per row and crops the rows not yet drawn, 3.6x fewer FLOPs than the
reference's full pass per pixel for the same images.
"""

from jaxgen.families.pixelcnn import default_config


def get_config():
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.model.filters = 32
    c.model.num_resnet = 1
    c.model.num_resolutions = 3
    c.model.num_mixtures = 5
    c.model.dropout = 0.1
    c.train.num_steps = 5000
    c.train.batch_size = 32
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.eval.batch_size = 500
    c.eval.num_samples = 1000
    c.eval.sample_batch_size = 250
    c.sample.every_steps = 5000
    c.checkpoint.every_steps = 500
    return c
