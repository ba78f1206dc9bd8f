"""Text-to-image diffusion on scikit-learn's 8x8 digits, minutes on 2 CPU cores: prompts such as
"a dark 3" or "7, small, bright" (captions built from each image's class and its brightness and
size, measured on the pixels; jaxgen/data/captions.py), cross-attention at 4x4 and in the middle,
classifier-free guidance through prompt dropout. "bright 3" and "small 7" are never named in a
training caption: prompting them tests composition.

python -m jaxgen.train --config=experiments/text_digits.py --workdir=runs/text_digits
python -m jaxgen.sample --workdir=runs/text_digits \\
    --prompt="a bright 3" --prompt="a dark 3" --guidance=2 --num=16
"""

from jaxgen.families.text_to_image import default_config


def get_config():
    c = default_config()
    c.data.source = "digits"
    c.data.caption_holdout = ("bright 3", "small 7")
    c.model.channels = 32
    c.model.channel_mults = (1, 2)
    c.model.num_res_blocks = 1
    c.model.attention_resolutions = ()
    c.model.transformer_resolutions = (4,)
    c.model.dropout = 0.0
    c.model.num_groups = 8
    c.model.text_width = 32
    c.model.prompt_dropout = 0.1
    c.train.num_steps = 3000
    c.train.batch_size = 128
    c.train.learning_rate = 1e-3
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 100
    c.eval.every_steps = 1000
    c.eval.batch_size = 360
    c.eval.vlb_timesteps = 50
    c.eval.num_samples = 2000
    c.sample.every_steps = 1000
    c.sample.guidance_scale = 2.0
    c.checkpoint.every_steps = 500
    return c
