"""python -m jaxgen.train --config=experiments/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE]

Starts a run, or continues the one in DIR from its newest checkpoint. One trainer per
workdir: a second one exits with code 2 naming the holder. SIGTERM or SIGINT ends the run
after the step in flight with a checkpoint of that step and exit code 75 (rerun the same
command to continue); a second signal exits at once.
"""

from __future__ import annotations

from jaxgen.engine import api
from jaxgen.cli import common as cli
from jaxgen.core import parallel
from jaxgen.training import workdir as workdir_lib


def main(argv: list[str]) -> None:
    flags, overrides = cli.parse(cli.parser(__doc__.splitlines()[0]), argv)
    cli.init_runtime(flags, overrides)
    workdir_lib.check_usable(flags.workdir, write=False)
    config = cli.resolve_config(flags, overrides)
    model = api.train(config, flags.workdir,
                      config_from_workdir=cli.config_from_workdir(flags, overrides))
    if parallel.is_primary():
        print(f"trained to step {int(model.state.step)}; written in {flags.workdir}:",
              flush=True)
        for line in workdir_lib.contents(flags.workdir):
            print("  " + line, flush=True)

