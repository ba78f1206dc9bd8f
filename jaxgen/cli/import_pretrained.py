"""python -m jaxgen.import_pretrained --pretrained=PATH --workdir=DIR [--config.KEY=VALUE]

Turns a diffusers UNet2DModel folder (`jaxgen.pretrained`) into a jaxgen workdir at step 0,
the folder's weights as both the parameters and their EMA, which `sample`, `evaluate` and
`train` (fine-tuning: --config.train.num_steps=N and a learning rate of your choosing) accept.
A folder jaxgen exported carries its run's config (jaxgen_config.json); any other must be told
its data, e.g. --config.data.source=tfds --config.data.name=cifar10 for google/ddpm-cifar10-32.
DIR/imported_from.json records the source: its path and each file's SHA-256.
"""

from __future__ import annotations

import os

import jax

from jaxgen.cli import common as cli
from jaxgen.core import parallel
from jaxgen import pretrained
from jaxgen.engine import runs
from jaxgen.training import trainer as trainer_lib
from jaxgen.training import workdir as workdir_lib
from jaxgen.core.config import ConfigError

RECORD_FILE = "imported_from.json"


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--pretrained", required=True, help="a diffusers UNet2DModel folder")
    flags, overrides = cli.parse(p, argv)
    workdir_lib.check_usable(flags.workdir, write=False)
    if workdir_lib.has_config(flags.workdir) or os.path.isdir(
            workdir_lib.path(flags.workdir, workdir_lib.CHECKPOINTS)):
        raise ConfigError(f"{flags.workdir} already holds a run: import into a new workdir")
    folder, config = runs.pretrained_config(flags.pretrained, overrides)
    if folder.jaxgen_config is None and not any(o.startswith("data.") for o in overrides):
        raise ConfigError(f"{flags.pretrained} has no {pretrained.JAXGEN_CONFIG}: name the data "
                          f"the model was trained on, e.g. --config.data.source=tfds "
                          f"--config.data.name=cifar10")
    cli.init_runtime(flags, overrides, config)
    model = runs.load_pretrained(folder, config)
    splits, family = runs.prepare_config(config)
    train = splits["train"]
    if tuple(train.images.shape[1:]) != model.data.image_shape:
        raise ConfigError(f"the model takes {model.data.image_shape} images, data.source="
                          f"{config.data.source} gives {tuple(train.images.shape[1:])}")
    if config.model.conditional and train.num_classes != model.data.num_classes:
        raise ConfigError(f"the model has {model.data.num_classes} classes, data.source="
                          f"{config.data.source} has {train.num_classes}")
    workdir_lib.check_usable(flags.workdir, write=True)
    with workdir_lib.lock(flags.workdir):
        trainer = trainer_lib.Trainer(config, family, splits)
        state = trainer.init_state()
        sharding = parallel.replicated(trainer.mesh)
        params = jax.device_put(model.params, sharding)
        state = state.replace(params=params,
                              ema_params=params if state.ema_params is not None else None)
        if parallel.is_primary():
            workdir_lib.write_config(flags.workdir, config)
            workdir_lib.append_run_record(flags.workdir)
            workdir_lib.write_json_atomic(workdir_lib.path(flags.workdir, RECORD_FILE),
                                          source_record(flags.pretrained))
        checkpointer = workdir_lib.checkpointer(flags.workdir, config.checkpoint.keep)
        try:
            checkpointer.save(0, state, trainer.stream.position(0))
            checkpointer.wait()
        finally:
            checkpointer.close()
    if parallel.is_primary():
        print(f"imported {flags.pretrained} into {flags.workdir} (step 0):", flush=True)
        for line in workdir_lib.contents(flags.workdir):
            print("  " + line, flush=True)


def source_record(path: str) -> dict:
    """The imported folder: its path and the SHA-256 of every file in it."""
    files = [os.path.join(directory, name) for directory, _, names in os.walk(path)
             for name in names]
    return {"path": os.path.abspath(path), "sha256": workdir_lib.file_digests(files, path)}

