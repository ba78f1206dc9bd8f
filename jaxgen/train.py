"""python -m jaxgen.train --config=experiments/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE]

Starts a run, or continues the one in DIR from its newest checkpoint.
"""

from __future__ import annotations

import json
import os

from jaxgen import cli
from jaxgen import config as config_lib


def main(argv: list[str]) -> None:
    flags, overrides = cli.parse(cli.parser(__doc__.splitlines()[0]), argv)
    cli.init_runtime(flags)
    config, splits, family = cli.prepare(flags, overrides)
    saved = os.path.join(flags.workdir, cli.CONFIG_FILE)
    if os.path.isfile(saved):
        with open(saved, encoding="utf-8") as f:
            config_lib.check_resumable(json.load(f), config, flags.workdir)

    from jaxgen import parallel, trainer
    if parallel.is_primary():
        cli.write_json_atomic(saved, json.loads(config.to_json()))
        with open(os.path.join(flags.workdir, "run_info.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(config_lib.run_record()) + "\n")
    trainer.train(config, flags.workdir, family, splits)


if __name__ == "__main__":
    cli.main_guard(main)
