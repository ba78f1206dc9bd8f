"""What the three entry points share: flags, config resolution, one-line errors.

`--config=experiments/NAME.py[:ARG]` and `--config.KEY=VALUE` as in the Flax
examples; `--workdir=DIR`; multi-host flags for `jax.distributed.initialize`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

import ml_collections

from jaxgen import config as config_lib

CONFIG_FILE = "config.json"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, allow_abbrev=False)
    p.add_argument("--config", help="experiments/NAME.py[:ARG]; default: the workdir's config")
    p.add_argument("--workdir", required=True, help="the run's directory")
    p.add_argument("--multihost", action="store_true",
                   help="call jax.distributed.initialize() (TPU pods, SLURM, Open MPI detect "
                        "their cluster; elsewhere give the three flags below)")
    p.add_argument("--coordinator_address", help="host:port of process 0")
    p.add_argument("--num_processes", type=int)
    p.add_argument("--process_id", type=int)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Returns (flags, config overrides as 'KEY=VALUE'); unknown flags are errors."""
    overrides, rest = [], []
    for arg in argv:
        (overrides if arg.startswith("--config.") else rest).append(arg)
    flags = p.parse_args(rest)
    return flags, [o[len("--config."):] for o in overrides]


def init_runtime(flags: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if flags.multihost or flags.coordinator_address:
        from jaxgen import parallel
        parallel.initialize_distributed(flags.coordinator_address, flags.num_processes,
                                        flags.process_id)


def resolve_config(flags: argparse.Namespace, overrides: list[str]) -> ml_collections.ConfigDict:
    """The experiment file's config (or the workdir's saved one) with overrides applied."""
    saved = os.path.join(flags.workdir, CONFIG_FILE)
    if flags.config:
        return config_lib.load(flags.config, overrides)
    if not os.path.isfile(saved):
        raise config_lib.ConfigError(f"no --config given and no {saved} to continue from")
    with open(saved, encoding="utf-8") as f:
        config = config_lib.fill_defaults(ml_collections.ConfigDict(json.load(f)))
    for override in overrides:
        key, _, text = override.partition("=")
        config_lib.set_value(config, key, text)
    return config


def write_json_atomic(path: str, payload: dict) -> None:
    """Writes through a temporary file, so a kill never leaves half a JSON file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def main_guard(main: Callable[[list[str]], None]) -> None:
    """Runs main(argv); known failures end as one line on stderr and a non-zero exit."""
    from jaxgen.data.sources import DatasetError
    from jaxgen.trainer import NonFiniteLossError
    try:
        main(sys.argv[1:])
    except (config_lib.ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)


def prepare(flags: argparse.Namespace, overrides: list[str]):
    """(config, splits, family) checked against the devices and the data; touches no file."""
    import jax
    from jaxgen import registry
    from jaxgen.data import sources
    config = resolve_config(flags, overrides)
    config_lib.validate(config, jax.device_count(), jax.process_count())
    splits = sources.load(config.data.source, config.data.name, config.data.data_dir)
    if config.train.batch_size > len(splits["train"]):
        raise config_lib.ConfigError(f"train.batch_size={config.train.batch_size} exceeds the "
                                     f"{len(splits['train'])} training examples")
    if config.data.binarize and config.data.dequantize:
        raise config_lib.ConfigError("data.binarize and data.dequantize exclude each other")
    family = registry.build(config, sources.DataSpec.of(splits["train"]))
    return config, splits, family


def restore(flags: argparse.Namespace, overrides: list[str]):
    """(config, splits, family, trainer, state) of the workdir's newest checkpoint."""
    from jaxgen.checkpoint import Checkpointer
    from jaxgen.trainer import Trainer
    config, splits, family = prepare(flags, overrides)
    trainer = Trainer(config, family, splits)
    checkpointer = Checkpointer(os.path.join(flags.workdir, "checkpoints"), config.checkpoint.keep)
    restored = checkpointer.restore_latest(trainer.abstract_state())
    checkpointer.close()
    if restored is None:
        raise config_lib.ConfigError(f"no readable checkpoint in {flags.workdir}/checkpoints")
    return config, splits, family, trainer, restored[0]
