"""Class-conditional GAN on Fashion-MNIST: label embedding in the generator, projection
discriminator (Miyato & Koyama 2018); otherwise gan_fashion_mnist.py. Its samples are scored
for conditional accuracy (the classifier's agreement with the requested class).

python -m jaxgen.train --config=experiments/cgan_fashion_mnist.py --workdir=runs/cgan_fmnist
python -m jaxgen.evaluate --workdir=runs/cgan_fmnist
ARG (optional): LOSS[,REGULARISER] as in gan_digits.py.
"""

from jaxgen.core.config import sibling

gan_config = sibling(__file__, "gan_fashion_mnist").get_config


def get_config(variant: str = "non_saturating,r1"):
    c = gan_config(variant)
    c.model.conditional = True
    return c
