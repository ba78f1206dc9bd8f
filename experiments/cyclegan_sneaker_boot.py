"""CycleGAN between two Fashion-MNIST classes, sneakers (A, class 7) and ankle boots (B,
class 9): no true translation exists, so `jaxgen.evaluate` reports the share of translated
images the evaluation classifier (trained on all ten classes) puts in the target class, and
FID of the translations against the target class's test images. Networks and schedule as
cyclegan_fashion_invert.py.

python -m jaxgen.train --config=experiments/cyclegan_sneaker_boot.py --workdir=runs/cg_shoes
python -m jaxgen.sample --workdir=runs/cg_shoes
python -m jaxgen.evaluate --workdir=runs/cg_shoes
ARG (optional): "A,B", two other class ids, e.g. "0,6" (T-shirt/top <-> shirt).
"""

from jaxgen.core.config import sibling
from jaxgen.families.cyclegan import default_config

invert = sibling(__file__, "cyclegan_fashion_invert")


def get_config(classes: str = "7,9"):
    try:
        a, b = (int(k) for k in classes.split(","))
    except ValueError:
        raise ValueError(f"ARG must be two class ids 'A,B', got '{classes}'") from None
    c = default_config()
    # Whole classes: the two domains are disjoint already.
    invert.fashion_domain(c.data.domain_a, 0, classes=(a,))
    invert.fashion_domain(c.data.domain_b, 0, classes=(b,))
    c.data.domain_a.part = c.data.domain_b.part = (0, 1)
    return invert.small_cyclegan(c)
