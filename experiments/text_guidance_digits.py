"""Ablation: classifier-free guidance scale of the text-to-image digits model against prompt
following (class and attribute accuracy on seen and held-out pairs), FID and precision/recall.
One model (text_digits.py) is trained; the points differ only in sample.guidance_scale, so they
share its workdir and are evaluated side by side.

python -m jaxgen.sweep --config=experiments/text_guidance_digits.py --workdir=runs/text_guidance
python -m jaxgen.report runs/text_guidance --metric=seen_brightness_accuracy \\
    --x=sample.guidance_scale
"""

from jaxgen.cli import sweep
from jaxgen.core.config import sibling

text_digits_config = sibling(__file__, "text_digits").get_config


def get_config():
    c = text_digits_config()
    c.eval.num_samples = 1000
    c.eval.prompt_samples = 25  # 40 prompts: 1,000 samples
    return c


def get_sweep():
    return sweep.grid({"sample.guidance_scale": [0.0, 1.0, 2.0, 4.0, 6.0]})
