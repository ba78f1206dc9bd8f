"""Ablation: the VAE's beta and decoder likelihood on Fashion-MNIST against -ELBO, FID, recall.

python -m jaxgen.sweep --config=experiments/vae_beta_ablation.py --workdir=runs/vae_beta
python -m jaxgen.report runs/vae_beta --metric=fid --x=model.beta

Each point is the vae_fashion_mnist model trained for the same number of steps; the
decoder axis switches the likelihood together with the data it is proper on
(binarised pixels for Bernoulli, dequantised ones for the learned-variance Gaussian).
"""

from jaxgen.cli import sweep
from jaxgen.core.config import sibling

fashion_mnist_config = sibling(__file__, "vae_fashion_mnist").get_config


def get_config():
    c = fashion_mnist_config()
    c.train.num_steps = 1000
    c.eval.every_steps = 1000
    c.sample.every_steps = 1000
    c.checkpoint.every_steps = 500
    c.eval.iwae_samples = 0  # -ELBO only: the IWAE bound costs K decoder passes per image
    c.eval.num_samples = 10000
    return c


def get_sweep():
    return sweep.grid({
        "decoder": {
            "bernoulli": {"model.decoder": "bernoulli", "data.binarize": True,
                          "data.dequantize": False},
            "gaussian_learned": {"model.decoder": "gaussian_learned", "data.binarize": False,
                                 "data.dequantize": True},
        },
        "model.beta": [0.5, 1.0, 4.0],
    })
