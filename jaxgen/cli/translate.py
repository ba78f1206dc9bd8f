"""python -m jaxgen.translate --workdir=DIR --input=FOLDER_OR_IMAGE --output=FOLDER [--direction=ab]

Translates a user's own images with a trained translator (CycleGAN) from its newest
checkpoint: every PNG/JPEG file of --input (a file, or a folder and its subfolders) is read
like the run's data (converted to its channels, the shorter side resized to its size and a
centred square cropped), translated from domain A to B (--direction=ab) or B to A (ba), and
written to --output as PNG under its own relative path. The workdir is only read.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxgen.cli import common as cli
from jaxgen.core import parallel
from jaxgen.pictures import viz
from jaxgen.core.config import ConfigError
from jaxgen.core.contract import Translator
from jaxgen.data import folder
from jaxgen.data.ranges import to_model_range

BATCH = 32  # images per compiled call (the last batch padded: one program)


def input_files(path: str) -> list[tuple[str, str]]:
    """[(file, its path relative to --input)] of the images to translate."""
    if os.path.isfile(path):
        if not folder.is_image(os.path.basename(path)):
            raise ConfigError(f"--input {path} is not a PNG or JPEG file")
        return [(path, os.path.basename(path))]
    if not os.path.isdir(path):
        raise ConfigError(f"--input {path} does not exist")
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found += [(os.path.join(root, f), os.path.relpath(os.path.join(root, f), path))
                  for f in sorted(files) if folder.is_image(f)]
    if not found:
        raise ConfigError(f"no PNG or JPEG images under --input {path}")
    return found


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="an image, or a folder of images")
    p.add_argument("--output", required=True, help="the folder the translations go to")
    p.add_argument("--direction", default="ab", choices=("ab", "ba"),
                   help="ab: domain A to B; ba: B to A")
    flags, overrides = cli.parse(p, argv)
    files = input_files(flags.input)
    output = os.path.abspath(flags.output)
    if os.path.isdir(flags.input) and output == os.path.abspath(flags.input):
        raise ConfigError("--output must not be the --input folder: it would overwrite the "
                          "originals")
    for path, _ in files:  # before the restore: a bad file fails in a second
        reason = folder.unreadable(path)
        if reason:
            raise ConfigError(f"cannot read image {path}: {reason}")
    cli.init_runtime(flags, overrides)
    config, splits, family, trainer, state = cli.restore(flags, overrides)
    if not isinstance(family, Translator):
        raise ConfigError(f"the run in {flags.workdir} (family '{config.family}') does not "
                          "translate images")
    height, width, channels = family.data.image_shape
    if height != width:
        raise ConfigError(f"the run's images are {height}x{width}; only square runs translate "
                          "files")
    images = []
    for path, _ in files:
        image = folder.decode(path, height, channels)
        if isinstance(image, str):
            raise ConfigError(f"cannot read image {path}: {image}")
        images.append(image)
    translate = jax.jit(lambda s, x: family.translate(s, x, flags.direction))
    translated = []
    for start in range(0, len(images), BATCH):
        batch = np.stack(images[start:start + BATCH])
        rows = len(batch)
        batch = np.concatenate([batch, np.repeat(batch[-1:], BATCH - rows, axis=0)])
        x = to_model_range(batch, 255, family.value_range)
        out = np.asarray(parallel.fetch(translate(state, x)))[:rows]
        translated.append(viz.to_uint8(out, family.value_range))
    translated = np.concatenate(translated)
    if parallel.is_primary():
        for (_, relative), image in zip(files, translated):
            target = os.path.join(output, os.path.splitext(relative)[0] + ".png")
            viz.save_png(target, image, min_size=0)
        print(f"translated {len(files)} image(s) {flags.direction[0].upper()} -> "
              f"{flags.direction[1].upper()} into {output}")

