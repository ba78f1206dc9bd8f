"""Model families by name: the registry. Adding a family is one line here.

The trainer never imports a family; this table names them and `build` imports the one a
config asks for. `config.family` is a name below or "package.module:Factory" for a family
that lives outside jaxgen; a factory is called as Factory(config, data_spec).

A family outside the table is code, and a workdir must never make jaxgen run code: a shared
or downloaded workdir's config.json could name a module lying beside it. So a config read
from a workdir (`build(..., from_workdir=True)`) gets registered families only, unless the
user lists the family in $JAXGEN_ALLOWED_FAMILIES (comma-separated) or with the CLIs'
`--allow_family` (`trust`). The user's own experiment files and command lines may name any.
"""

from __future__ import annotations

import importlib
import inspect
import os

from jaxgen.core import config as config_lib, contract
from jaxgen.core import config_keys
from jaxgen.core.config import ConfigError

FAMILIES = {
    "ae": "jaxgen.families.ae:AEFamily",
    "vae": "jaxgen.families.vae:VAEFamily",
    "classifier": "jaxgen.families.classifier:ClassifierFamily",
    "noisy_classifier": "jaxgen.families.classifier:NoisyClassifierFamily",
    "diffusion": "jaxgen.families.diffusion:DiffusionFamily",
    "latent_diffusion": "jaxgen.families.latent_diffusion:LatentDiffusionFamily",
    "gan": "jaxgen.families.gan:GANFamily",
    "stylegan": "jaxgen.families.stylegan:StyleGANFamily",
    "cyclegan": "jaxgen.families.cyclegan:CycleGANFamily",
    "pixelcnn": "jaxgen.families.pixelcnn:PixelCNNFamily",
    "text_diffusion": "jaxgen.families.text_to_image:TextDiffusionFamily",
    "text_latent_diffusion": "jaxgen.families.text_to_image:TextLatentDiffusionFamily",
}


ALLOW_ENV = "JAXGEN_ALLOWED_FAMILIES"
_trusted: set[str] = set()


def trust(name: str) -> None:
    """Lets `build` import the family `name` ("package.module:Factory") in this process."""
    _trusted.add(name)


def is_allowed(name: str) -> bool:
    listed = {n.strip() for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()}
    return name in FAMILIES or name in _trusted or name in listed


def complete(config):
    """A config read from a workdir, with the keys its registered family declared since it
    was written (at the values their absence implies: the run computes as it did)."""
    if config.family in FAMILIES:
        module_name, _, factory = FAMILIES[config.family].partition(":")
        keys = getattr(importlib.import_module(module_name), factory).keys
        config_lib.fill_declared(config, keys)
    return config


def family_module(name: str):
    """The module of a registered family (its KEYS and default_config)."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown family '{name}' (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name].partition(":")[0])


def family_keys(name: str) -> config_keys.Keys:
    """"base": the keys of every experiment; a family's name: the keys it adds."""
    if name == "base":
        return config_keys.BASE_KEYS
    module = family_module(name)
    return getattr(module, FAMILIES[name].partition(":")[2]).keys


def _not_a_factory(name: str, factory, why: str) -> ConfigError:
    return ConfigError(f"family '{name}' is not a family factory: "
                       f"{getattr(factory, '__qualname__', type(factory).__name__)} {why}; "
                       "a family is a class or function called as Factory(config, data_spec)")


def _construct(name: str, factory, config, data_spec, **runs):
    """factory(config, data_spec[, frozen=...]), or ConfigError when `factory` cannot be called
    so: a value such as 'os:getcwd' names something importable that is no family factory."""
    if not callable(factory):
        raise _not_a_factory(name, factory, "is not callable")
    try:
        inspect.signature(factory).bind(config, data_spec, **runs)
    except TypeError as e:
        raise _not_a_factory(name, factory, f"takes other arguments ({e})") from None
    except ValueError:  # a builtin without a signature: the call itself tells
        pass
    try:
        return factory(config, data_spec, **runs)
    except TypeError as e:
        if e.__traceback__.tb_next is None:  # raised by the call, not inside a Python factory
            raise _not_a_factory(name, factory, f"refused the call ({e})") from None
        raise


def factory_of(config, from_workdir: bool = False):
    """The class (or function) `config.family` names, imported; ConfigError for an unknown
    name, or a family outside jaxgen named by a workdir's config and not trusted."""
    target = FAMILIES.get(config.family, config.family)
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise ConfigError(f"unknown family '{config.family}' (known: {', '.join(FAMILIES)}; "
                          "or give 'package.module:Factory')")
    if from_workdir and not is_allowed(config.family):
        raise ConfigError(f"family '{config.family}' is code outside jaxgen, named by a "
                          f"workdir's config; import it only if you trust it: "
                          f"--allow_family={config.family} (or ${ALLOW_ENV})")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load family '{config.family}': {e}") from None
    return factory


def frozen_inputs_needed(factory, config) -> dict[str, contract.FrozenInput]:
    """{config key: FrozenInput} the family builds on (`contract.BuildsOnFrozenInputs`); {} for
    most families."""
    if isinstance(factory, contract.BuildsOnFrozenInputs):
        return factory.frozen_inputs_needed(config)
    return {}


def build(config, data_spec, from_workdir: bool = False, frozen=None):
    """The family `config.family` names, built for data of `data_spec`; checked against the
    contract. from_workdir: the config was read from a workdir (see the module docstring).
    frozen: {config key: loaded input} of what it builds on (`frozen_inputs_needed`), as
    `jaxgen.engine.restore.build_family` loads them."""
    factory = factory_of(config, from_workdir)
    needed = frozen_inputs_needed(factory, config)
    if needed:
        missing = sorted(set(needed) - set(frozen or {}))
        if missing:
            raise ConfigError(f"family '{config.family}' builds on frozen inputs "
                              f"({', '.join(missing)}): build it with "
                              "jaxgen.engine.restore.build_family, which loads them")
        family = _construct(config.family, factory, config, data_spec,
                            frozen={key: frozen[key] for key in needed})
    else:
        family = _construct(config.family, factory, config, data_spec)
    missing = contract.missing_members(family)
    if missing:
        raise ConfigError(f"family '{config.family}' does not fulfil the family contract "
                          f"(jaxgen/contract.py): it has no {', '.join(missing)}")
    return family
