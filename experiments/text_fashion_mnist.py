"""Text-to-image diffusion on Fashion-MNIST (28x28), sized for 2 CPU cores: the UNet of
ddpm_fashion_mnist.py with spatial transformers (self-attention, cross-attention to the prompt,
feed-forward) at 14x14 and 7x7, and a two-layer text encoder trained with it. Captions name the
class and the brightness and size measured on the pixels ("a dark ankle boot", "ankle boot,
small, dark"; jaxgen/data/captions.py). Three attribute-class pairs never appear in a training
caption: "bright sandal", "small coat" and "dark bag" test composition.

python -m jaxgen.train --config=experiments/text_fashion_mnist.py --workdir=runs/text_fmnist
python -m jaxgen.sample --workdir=runs/text_fmnist \\
    --prompt="a dark sneaker" --prompt="a bright sandal" --guidance=4 --num=16
python -m jaxgen.evaluate --workdir=runs/text_fmnist --num_samples=1000
On a GPU, raise model.channels to 64 and train.num_steps to 20000.
"""

from jaxgen.families.text_to_image import default_config


def get_config():
    c = default_config()
    c.data.source = "tfds"
    c.data.name = "fashion_mnist"
    c.data.caption_holdout = ("bright sandal", "small coat", "dark bag")
    c.model.channels = 16
    c.model.channel_mults = (1, 2, 2)
    c.model.num_res_blocks = 1
    c.model.attention_resolutions = ()
    c.model.transformer_resolutions = (14, 7)
    c.model.dropout = 0.1
    c.model.num_groups = 8
    c.model.num_timesteps = 1000
    c.model.text_width = 64
    c.model.prompt_dropout = 0.1
    c.train.num_steps = 9000
    c.train.batch_size = 128
    c.train.learning_rate = 5e-4
    c.train.ema_decay = 0.999
    c.train.log_every_steps = 200
    c.eval.every_steps = 3000
    c.eval.batch_size = 500
    c.eval.num_examples = 1000
    c.eval.vlb_timesteps = 100
    c.eval.num_samples = 1000
    c.sample.every_steps = 3000
    c.sample.guidance_scale = 2.0
    c.checkpoint.every_steps = 1000
    return c
