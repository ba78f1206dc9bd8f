"""Ablation: classifier-free guidance scale of the Fashion-MNIST text-to-image model against
prompt following (class, brightness and size accuracy on seen and held-out pairs), FID and
precision/recall. One model (text_fashion_mnist.py) is trained; the points differ only in
sample.guidance_scale, so they share its workdir and are evaluated side by side.

python -m jaxgen.sweep --config=experiments/text_guidance_fashion_mnist.py \\
    --workdir=runs/text_guidance_fmnist
python -m jaxgen.report runs/text_guidance_fmnist --metric=seen_class_accuracy \\
    --x=sample.guidance_scale
"""

from jaxgen.cli import sweep
from jaxgen.core.config import sibling

text_fashion_config = sibling(__file__, "text_fashion_mnist").get_config


def get_config():
    c = text_fashion_config()
    c.eval.every_steps = c.train.num_steps  # the sweep evaluates every point at the end
    c.eval.prompt_samples = 25  # 40 prompts (10 classes x 2 attributes x 2): 1,000 samples
    return c


def get_sweep():
    return sweep.grid({"sample.guidance_scale": [0.0, 1.0, 2.0, 4.0]})
