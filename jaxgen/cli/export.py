"""python -m jaxgen.export --workdir=DIR --format=diffusers --out=PATH [--params=ema|raw]

Writes a trained diffusion run's UNet as a diffusers pipeline folder (`jaxgen.pretrained`):
PATH/unet (config.json, diffusion_pytorch_model.safetensors), PATH/scheduler, model_index.json,
and jaxgen_config.json (the run's config, so that importing PATH restores the run). The EMA
weights by default. `UNet2DModel.from_pretrained(PATH, subfolder="unet")` or
`DDPMPipeline.from_pretrained(PATH)` loads it; PyTorch is not needed to write it.
"""

from __future__ import annotations

from jaxgen.cli import common as cli
from jaxgen.core import parallel
from jaxgen import pretrained
from jaxgen.core.config import ConfigError
from jaxgen.data.sources import DataSpec
from jaxgen.engine import restore as trained


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--format", required=True, choices=("diffusers",), help="the folder layout")
    p.add_argument("--out", required=True, help="the folder to write (new or empty)")
    p.add_argument("--params", default="ema", choices=("ema", "raw"),
                   help="the EMA of the weights (default) or the weights themselves")
    flags, overrides = cli.parse(p, argv)
    if overrides:
        raise ConfigError("export takes no --config overrides: it writes the run as trained")
    cli.init_runtime(flags, overrides)
    run = trained.load(flags.workdir, "--workdir")
    state = run.state
    if flags.params == "ema" and state.ema_params is None:
        raise ConfigError(f"{flags.workdir} kept no EMA (train.ema_decay=0): use --params=raw")
    params = state.ema_params if flags.params == "ema" else state.params
    if not parallel.is_primary():
        return
    files = pretrained.export(run.config, DataSpec.of(run.splits["train"]), params, flags.out)
    print(f"exported step {int(state.step)} of {flags.workdir} ({flags.params} weights):")
    for file in files:
        print("  " + file)

