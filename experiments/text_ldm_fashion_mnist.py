"""Text-to-image latent diffusion on Fashion-MNIST (Stable Diffusion's arrangement): the
denoiser runs on the 16-D codes of a trained autoencoder and reads the prompt through
cross-attention (at the codes' 1x1 "resolution": the code attends to the tokens) and the pooled
prompt embedding. Captions and held-out pairs as text_fashion_mnist.py.

python -m jaxgen.train --config=experiments/ae_fashion_mnist.py --workdir=runs/ae_fmnist
python -m jaxgen.train --config=experiments/text_ldm_fashion_mnist.py --workdir=runs/text_ldm \\
    --config.model.autoencoder_workdir=runs/ae_fmnist
python -m jaxgen.sample --workdir=runs/text_ldm --prompt="a dark sneaker" --guidance=4 --num=16
"""

from jaxgen.core.config import sibling, take_shared
from jaxgen.families.text_to_image import latent_default_config

ldm_config = sibling(__file__, "ldm_fashion_mnist").get_config
pixel_config = sibling(__file__, "text_fashion_mnist").get_config


def get_config():
    c = take_shared(latent_default_config(), ldm_config())
    pixel = pixel_config()
    c.data.caption_holdout = pixel.data.caption_holdout
    c.model.transformer_resolutions = (1,)
    c.model.text_width = pixel.model.text_width
    c.eval.num_samples = 1000
    c.sample.guidance_scale = 2.0
    return c
