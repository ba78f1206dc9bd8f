"""Text-to-image diffusion on scikit-learn's 8x8 digits, minutes on 2 CPU cores: prompts such as
"a dark 3" or "7, small, bright" (captions built from each image's class and its brightness and
size, measured on the pixels; jaxgen/data/captions.py). The UNet of ddpm_digits.py with a spatial
transformer (self-attention, cross-attention to the prompt, feed-forward) at 4x4 and in the
middle instead of self-attention alone, a two-layer text encoder, classifier-free guidance through
prompt dropout. "bright 3" and "small 7" are never named in a training caption: prompting them
tests composition.

python -m jaxgen.train --config=experiments/text_digits.py --workdir=runs/text_digits
python -m jaxgen.sample --workdir=runs/text_digits \\
    --prompt="a bright 3" --prompt="a dark 3" --guidance=2 --num=16
"""

from jaxgen.core.config import sibling, take_shared
from jaxgen.families.text_to_image import default_config

ddpm_config = sibling(__file__, "ddpm_digits").get_config


def get_config():
    c = take_shared(default_config(), ddpm_config())
    c.data.caption_holdout = ("bright 3", "small 7")
    c.model.attention_resolutions = ()
    c.model.transformer_resolutions = (4,)
    c.model.text_width = 32
    c.train.num_steps = 3000
    c.sample.guidance_scale = 2.0
    return c
