"""Frozen networks from other workdirs: the classifier of classifier guidance, the
autoencoder of latent diffusion. A family that needs one names its workdir in its config."""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from jaxgen import config as config_lib


def load(workdir: str, purpose: str) -> tuple[ml_collections.ConfigDict, Any, Any]:
    """(config, family, sampling params) of the newest checkpoint in `workdir`.

    Raises ConfigError naming `purpose` (the config key that pointed here) when the
    workdir has no config or no readable checkpoint.
    """
    from jaxgen import registry
    from jaxgen.checkpoint import Checkpointer
    from jaxgen.data import sources
    from jaxgen.trainer import Trainer
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"{purpose}: no trained run in '{workdir}' (no config.json)")
    with open(path, encoding="utf-8") as f:
        config = config_lib.fill_defaults(ml_collections.ConfigDict(json.load(f)))
    splits = sources.load(config.data.source, config.data.name, config.data.data_dir)
    family = registry.build(config, sources.DataSpec.of(splits["train"]))
    trainer = Trainer(config, family, splits)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep)
    restored = checkpointer.restore_latest(trainer.abstract_state())
    checkpointer.close()
    if restored is None:
        raise config_lib.ConfigError(f"{purpose}: no readable checkpoint in '{workdir}'")
    return config, family, restored[0].params_for_sampling()
