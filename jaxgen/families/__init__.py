"""Model families by name: the registry. Adding a family is one line here.

The trainer never imports a family; this table names them and `build` imports the one a
config asks for. `config.family` is a name below or "package.module:Factory" for a family
that lives outside jaxgen; a factory is called as Factory(config, data_spec).
"""

from __future__ import annotations

import importlib

from jaxgen import contract
from jaxgen.config import ConfigError

FAMILIES = {
    "ae": "jaxgen.families.ae:AEFamily",
    "vae": "jaxgen.families.vae:VAEFamily",
    "classifier": "jaxgen.families.classifier:ClassifierFamily",
    "noisy_classifier": "jaxgen.families.classifier:NoisyClassifierFamily",
    "diffusion": "jaxgen.families.diffusion:DiffusionFamily",
    "latent_diffusion": "jaxgen.families.latent_diffusion:LatentDiffusionFamily",
    "gan": "jaxgen.families.gan:GANFamily",
}


def family_module(name: str):
    """The module of a registered family (its KEYS and default_config)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown family '{name}' (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name].partition(":")[0])


def build(config, data_spec):
    """The family `config.family` names, built for data of `data_spec`; checked against the
    contract."""
    target = FAMILIES.get(config.family, config.family)
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise ConfigError(f"unknown family '{config.family}' (known: {', '.join(FAMILIES)}; "
                          "or give 'package.module:Factory')")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load family '{config.family}': {e}") from None
    family = factory(config, data_spec)
    missing = contract.missing_members(family)
    if missing:
        raise ConfigError(f"family '{config.family}' does not fulfil the family contract "
                          f"(jaxgen/contract.py): it has no {', '.join(missing)}")
    return family
