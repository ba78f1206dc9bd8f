"""Vanishing generator gradients (Goodfellow et al. 2014, sec. 3): the generator stays at its
initialisation (learning rate 0) while the discriminator learns to reject its samples; the
generator's gradient norm under each loss is logged at every step. Both runs train the same
discriminator on the same samples (same seed, frozen G), so they differ only in the loss
whose gradient is measured. The same quantity over a full training run is in the logs of
experiments/gan_digits.py's sweep.

python -m jaxgen.sweep --config=experiments/gan_vanishing_gradients.py --workdir=runs/gan_vanish
python -m jaxgen.report runs/gan_vanish --curve=g_grad_norm --split=train --at_steps=10,100,1000
"""

from jaxgen.cli import sweep
from jaxgen.core.config import sibling

gan_config = sibling(__file__, "gan_digits").get_config


def get_config():
    c = gan_config("non_saturating,none")  # a discriminator without R1, as measured
    c.train.learning_rate = 0.0  # the generator's: frozen at initialisation
    c.train.num_steps = 1000
    c.train.log_every_steps = 10
    c.train.ema_decay = 0.0
    c.eval.every_steps = 1000
    c.eval.num_samples = 0
    c.eval.track_samples = 0
    return c


def get_sweep():
    return sweep.grid({"model.loss": ["minimax", "non_saturating"]})
