"""python -m jaxgen.train --config=experiments/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE]

Starts a run, or continues the one in DIR from its newest checkpoint. One trainer per
workdir: a second one exits with code 2 naming the holder. SIGTERM or SIGINT ends the run
after the step in flight with a checkpoint of that step and exit code 75 (rerun the same
command to continue); a second signal exits at once.
"""

from __future__ import annotations

import json

from jaxgen import cli, config as config_lib, families, parallel, runs, trainer
from jaxgen import workdir as workdir_lib


def main(argv: list[str]) -> None:
    flags, overrides = cli.parse(cli.parser(__doc__.splitlines()[0]), argv)
    cli.init_runtime(flags, overrides)
    config, splits, family = runs.prepare(flags, overrides)
    with workdir_lib.lock(flags.workdir):
        if workdir_lib.has_config(flags.workdir):
            # The saved config with the keys declared since (at the values they imply).
            saved = families.complete(workdir_lib.read_config(flags.workdir))
            config_lib.check_resumable(json.loads(saved.to_json()), config, flags.workdir)
        if parallel.is_primary():
            workdir_lib.write_config(flags.workdir, config)
            workdir_lib.append_run_record(flags.workdir)
        trainer.train(config, flags.workdir, family, splits, runs.eval_hooks(config, family))


if __name__ == "__main__":
    cli.main_guard(main)
