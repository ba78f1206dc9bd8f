"""Model families by name. The trainer never imports a family; this table does, lazily.

`config.family` is a name below or "package.module:Factory" for a family that lives
outside jaxgen. A factory is called as Factory(config, data_spec).
"""

from __future__ import annotations

import importlib

from jaxgen.config import ConfigError

FAMILIES = {
    "ae": "jaxgen.objectives.autoencoder:AEFamily",
    "vae": "jaxgen.objectives.vae:VAEFamily",
    "classifier": "jaxgen.objectives.classifier:ClassifierFamily",
    "noisy_classifier": "jaxgen.objectives.classifier:NoisyClassifierFamily",
    "diffusion": "jaxgen.objectives.diffusion:DiffusionFamily",
    "latent_diffusion": "jaxgen.objectives.latent_diffusion:LatentDiffusionFamily",
    "gan": "jaxgen.objectives.gan:GANFamily",
}


def build(config, data_spec):
    target = FAMILIES.get(config.family, config.family)
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise ConfigError(f"unknown family '{config.family}' (known: {', '.join(FAMILIES)}; "
                          "or give 'package.module:Factory')")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load family '{config.family}': {e}") from None
    return factory(config, data_spec)
