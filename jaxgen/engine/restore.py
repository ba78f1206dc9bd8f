"""Families built with the frozen inputs they name (`contract.BuildsOnFrozenInputs`: trained
runs such as classifier guidance's classifier and latent diffusion's autoencoder, pretrained
weights such as a CLIP text encoder), and trained runs read back from their workdirs: what
`sample` and `evaluate` restore."""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxgen import families
from jaxgen.core import contract, parallel
from jaxgen.core.config import ConfigError
from jaxgen.core.contract import FrozenInput, TrainedRun
from jaxgen.data import sources
from jaxgen.families import complete
from jaxgen.text.clip import ClipTextEncoder
from jaxgen.training import workdir as workdir_lib


def build_family(config: ml_collections.ConfigDict, data: sources.DataSpec,
                 from_workdir: bool = False) -> Any:
    """`families.build` with the frozen inputs the family names loaded and handed in."""
    factory = families.factory_of(config, from_workdir)
    frozen = {key: load_frozen(key, wanted)
              for key, wanted in families.frozen_inputs_needed(factory, config).items()}
    return families.build(config, data, from_workdir, frozen)


def load_frozen(key: str, wanted: FrozenInput) -> Any:
    """The frozen input the config key `key` names, loaded (FROZEN_LOADERS)."""
    if wanted.kind not in FROZEN_LOADERS:
        raise ConfigError(f"{key}: unknown kind of frozen input '{wanted.kind}' (known: "
                          f"{', '.join(FROZEN_LOADERS)})")
    return FROZEN_LOADERS[wanted.kind](wanted.path, key)


def load(workdir: str, purpose: str = "", config: ml_collections.ConfigDict | None = None,
         splits: dict[str, sources.Split] | None = None, family: Any = None) -> TrainedRun:
    """The newest checkpoint of `workdir` with its config (or `config`, the saved one with
    overrides), data and family. ConfigError, naming `purpose` (the config key or flag that
    pointed here) when there is no config or no readable checkpoint."""
    prefix = f"{purpose}: " if purpose else ""
    from_workdir = config is None
    try:
        config = complete(workdir_lib.read_config(workdir)) if config is None else config
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None
    if splits is None:
        splits = sources.from_config(config.data)
    if family is None:
        try:
            family = build_family(config, sources.DataSpec.of(splits["train"]), from_workdir)
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
    try:
        workdir_lib.check_frozen_inputs(workdir, frozen_files(family), write=False)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None
    spec = sources.DataSpec.of(splits["train"])
    target = contract.abstract_state(
        family, config.seed, contract.example_batch(spec.image_shape, 1, spec.max_tokens,
                                                spec.two_domains),
        config.train.ema_decay > 0, parallel.replicated(parallel.make_mesh()))
    restored = workdir_lib.restore_latest(workdir, target)
    if restored is None:
        raise ConfigError(f"{prefix}no readable checkpoint in '{workdir}/"
                          f"{workdir_lib.CHECKPOINTS}'")
    return TrainedRun(config, splits, family, restored[0])


def frozen_files(family: Any) -> dict[str, list[str]]:
    """{config key: files} of the family's frozen pretrained weights (`RecordsFrozenFiles`)."""
    return family.frozen_inputs() if isinstance(family, contract.RecordsFrozenFiles) else {}


# How each kind of frozen input (`contract.FROZEN_KINDS`) is loaded: (path, config key) -> it.
FROZEN_LOADERS = {
    "run": lambda path, key: load(path, key),
    "clip_text_encoder": lambda path, key: ClipTextEncoder(path),
}
