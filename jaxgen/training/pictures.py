"""What the training loop draws into a workdir: the loss curves, the sample grid of a step
with the montage of the run's grids, a step's translation rows. Arrays in, files out: the loop
decides when and draws the images; this module only lays them out. Only the primary process
writes."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jaxgen.core import parallel
from jaxgen.pictures import viz
from jaxgen.training import workdir as workdir_lib
from jaxgen.training.writers import Writer, read_metrics

MONTAGE_GRIDS = 8


def write_curves(workdir: str, keys: Sequence[str]) -> None:
    """loss_curves.png: the logged `keys` over training, train and test."""
    if parallel.is_primary():
        viz.curves(workdir_lib.path(workdir, workdir_lib.CURVES_FILE), read_metrics(workdir),
                   list(keys))


def write_sample_grid(workdir: str, step: int, images: np.ndarray, classes,
                      column_labels, writer: Writer) -> None:
    """samples/step_N.png and the montage. images: uint8 [N, H, W, C]; classes: the class of
    each grid column (conditional models) or None."""
    if not parallel.is_primary():
        return
    mosaic = viz.sample_grid(images, classes)
    viz.save_png(workdir_lib.path(workdir, workdir_lib.SAMPLES, f"step_{step:07d}.png"),
                 mosaic, column_labels=column_labels)
    writer.image(step, "samples", viz.enlarged(mosaic))  # 8x8 digits: 73 px otherwise
    write_montage(workdir)


def write_translations(workdir: str, step: int, rows: np.ndarray, writer: Writer) -> None:
    """samples/translations_step_N.png. rows: uint8 [6, num, H, W, C], the columns of
    `viz.TRANSLATION_COLUMNS`."""
    if not parallel.is_primary():
        return
    mosaic = viz.translation_grid(rows)
    viz.save_png(workdir_lib.path(workdir, workdir_lib.SAMPLES,
                                  f"translations_step_{step:07d}.png"), mosaic,
                 column_labels=viz.TRANSLATION_COLUMNS)
    writer.image(step, "translations", viz.enlarged(mosaic))


def write_montage(workdir: str) -> None:
    """samples/montage.png: up to MONTAGE_GRIDS of the run's sample grids, evenly spaced over
    training, the newest last, each labelled with its step."""
    directory = workdir_lib.path(workdir, workdir_lib.SAMPLES)
    steps = sorted(int(name[5:12]) for name in os.listdir(directory)
                   if name.startswith("step_") and name.endswith(".png") and len(name) == 16)
    if len(steps) < 2:
        return
    chosen = sorted({steps[round(i * (len(steps) - 1) / (MONTAGE_GRIDS - 1))]
                     for i in range(MONTAGE_GRIDS)})
    viz.montage(os.path.join(directory, "montage.png"),
                [os.path.join(directory, f"step_{step:07d}.png") for step in chosen],
                [f"step {step}" for step in chosen])
