"""Trained runs, read back from their workdirs: what `sample` and `evaluate` restore, and the
frozen networks a family builds on (the classifier of classifier guidance, the autoencoder of
latent diffusion), which its config names by workdir."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from jaxgen import contract, parallel, workdir as workdir_lib
from jaxgen.config import ConfigError
from jaxgen.data import sources
from jaxgen.families import build, complete


@dataclasses.dataclass
class TrainedRun:
    config: ml_collections.ConfigDict
    splits: dict[str, sources.Split]
    family: Any
    state: Any  # the newest readable checkpoint's TrainState, replicated over the mesh


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
            family = build(config, sources.DataSpec.of(splits["train"]), from_workdir)
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
    try:
        workdir_lib.check_frozen_inputs(workdir, getattr(family, "frozen_inputs", dict)(),
                                        write=False)
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
