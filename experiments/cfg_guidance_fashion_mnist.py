"""Ablation: classifier-free guidance scale against FID, precision/recall and conditional
accuracy on Fashion-MNIST. One model (ddpm_fashion_mnist:cfg) is trained; the points differ
only in sample.guidance_scale, so they share its workdir and are evaluated side by side.

python -m jaxgen.sweep --config=experiments/cfg_guidance_fashion_mnist.py --workdir=runs/cfg
python -m jaxgen.report runs/cfg --metric=conditional_accuracy --x=sample.guidance_scale
"""

from jaxgen.cli import sweep
from jaxgen.core.config import sibling

ddpm_config = sibling(__file__, "ddpm_fashion_mnist").get_config


def get_config():
    c = ddpm_config("cfg")
    # Guidance needs a model that has learnt the label: 3,000 steps gave conditional accuracy
    # 0.20 at w = 0 and 0.69 at w = 4; the learning rate is constant, so these steps extend
    # that run exactly.
    c.train.num_steps = 9000
    # Five evaluations of one model on 2 CPU cores: 1,000 samples each (DDIM, 50 steps) and a
    # cheaper bound estimate; the real-data column is computed at the same N.
    c.eval.num_samples = 1000
    c.eval.num_examples = 500
    c.eval.vlb_timesteps = 50
    return c


def get_sweep():
    return sweep.grid({"sample.guidance_scale": [0.0, 1.0, 2.0, 4.0, 6.0]})
