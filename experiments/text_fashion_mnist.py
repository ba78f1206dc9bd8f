"""Text-to-image diffusion on Fashion-MNIST (28x28), sized for 2 CPU cores: the UNet of
ddpm_fashion_mnist.py with spatial transformers (self-attention, cross-attention to the prompt,
feed-forward) at 14x14 and 7x7, and a two-layer text encoder trained with it. Captions name the
class and the brightness and size measured on the pixels ("a dark ankle boot", "ankle boot,
small, dark"; jaxgen/data/captions.py). Three attribute-class pairs never appear in a training
caption: "bright sandal", "small coat" and "dark bag" test composition. 9,000 steps: the budget
at which the class-conditional model's guided class accuracy reached 0.94
(cfg_guidance_fashion_mnist.py).

python -m jaxgen.train --config=experiments/text_fashion_mnist.py --workdir=runs/text_fmnist
python -m jaxgen.sample --workdir=runs/text_fmnist \\
    --prompt="a dark sneaker" --prompt="a bright sandal" --guidance=4 --num=16
python -m jaxgen.evaluate --workdir=runs/text_fmnist --num_samples=1000
On a GPU, raise model.channels to 64 and train.num_steps to 20000.

ARG (optional): a folder with a CLIP text encoder and its tokenizer (a Stable Diffusion
pipeline folder: text_encoder/ and tokenizer/; jaxgen/text/clip.py), kept frozen in place of
the trained text encoder:
python -m jaxgen.train --config=experiments/text_fashion_mnist.py:/models/sd-v1-5 \
    --workdir=runs/text_fmnist_clip
"""

from jaxgen.core.config import sibling, take_shared
from jaxgen.families.text_to_image import default_config

ddpm_config = sibling(__file__, "ddpm_fashion_mnist").get_config


def get_config(text_encoder: str = ""):
    c = take_shared(default_config(), ddpm_config())
    if text_encoder:
        c.data.tokenizer = c.model.text_encoder = text_encoder
        c.data.max_tokens = 20  # CLIP's BPE: "t-shirt/top" alone is five tokens
    c.data.caption_holdout = ("bright sandal", "small coat", "dark bag")
    c.model.attention_resolutions = ()
    c.model.transformer_resolutions = (14, 7)
    c.train.num_steps = 9000
    c.eval.num_samples = 1000
    c.sample.guidance_scale = 2.0
    return c
