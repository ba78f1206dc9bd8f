"""python -m jaxgen.sample --workdir=DIR | --pretrained=PATH --out=DIR [--config.KEY=VALUE]

Pictures from the newest checkpoint, written to DIR/samples/: a grid of samples and,
for families with a latent space (encode/decode), linear and spherical interpolations
between test images, attribute arithmetic, and a scatter plot of 2-D latents; for
generators without an encoder (GANs), interpolations between prior draws and attribute
vectors between classes the evaluation classifier assigns to samples (a conditional
generator: one z per row rendered in every class); for style-based generators (StyleGAN),
style mixing, a truncation sweep, per-layer noise and interpolation in W against Z; for
families with a noising process (diffusion), a forward-process strip (test images at
increasing t) and a reverse-process strip (x_t along sampling trajectories); for
translators (CycleGAN), --num test images of each domain per row with their translation and
its translation back.
Sampler settings come from the config: --config.sample.sampler=ddpm, .steps, .eta,
.guidance_scale; --sampler and --steps are short for the first two.

--prompt="a dark sneaker" (repeatable) samples a text-to-image run: --num images per prompt,
one row each with the prompt written above it, in DIR/samples/prompts_*.png (and .npz);
--guidance=W is short for --config.sample.guidance_scale.

--pretrained=PATH samples a diffusers UNet2DModel folder (`jaxgen.pretrained`) with jaxgen's
samplers, without a workdir: DIR/samples.png (the grid) and DIR/samples.npz (uint8
[num, H, W, C], key "images").
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import os
import sys

from jaxgen.cli import common as cli
from jaxgen.pictures import latent, style as style_pictures, viz
from jaxgen.core import parallel, rng as rng_lib
from jaxgen.engine import runs
from jaxgen.training import workdir as workdir_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.contract import (LatentGenerator, LatentModel, NoisingProcess, PromptModel,
                             StyleGenerator, Translator)
from jaxgen.data.ranges import to_model_range, to_unit_range
from jaxgen.core.state import TrainState


def main(argv: list[str]) -> None:
    p = cli.parser(__doc__.splitlines()[0], workdir_required=False)
    p.add_argument("--num", type=int, default=64, help="images in the sample grid")
    p.add_argument("--sampler", help="short for --config.sample.sampler")
    p.add_argument("--steps", type=int, help="short for --config.sample.steps")
    p.add_argument("--interpolation_steps", type=int, default=10,
                   help="images along an interpolation")
    p.add_argument("--attribute", default="0,1",
                   help="FROM,TO classes: adds alpha * (mean z of TO - mean z of FROM)")
    p.add_argument("--pretrained", help="a diffusers UNet2DModel folder to sample instead of a "
                                        "workdir")
    p.add_argument("--out", help="where --pretrained writes its samples")
    p.add_argument("--seed", type=int, default=0,
                   help="which draw of --pretrained or --prompt samples")
    p.add_argument("--prompt", action="append", default=[],
                   help="a text-to-image run: sample this prompt (repeatable: a row each)")
    p.add_argument("--guidance", type=float, help="short for --config.sample.guidance_scale")
    flags, overrides = cli.parse(p, argv)
    if flags.num < 1:
        raise ConfigError(f"--num must be >= 1, got {flags.num}")
    shorthands = {"sampler": "sampler", "steps": "steps", "guidance": "guidance_scale"}
    overrides += [f"sample.{key}={getattr(flags, flag)}" for flag, key in shorthands.items()
                  if getattr(flags, flag) is not None]
    if flags.pretrained or flags.out:
        if flags.workdir or not (flags.pretrained and flags.out):
            raise ConfigError("--pretrained=PATH needs --out=DIR and no --workdir")
        return sample_pretrained(flags, overrides)
    if not flags.workdir:
        raise ConfigError("give --workdir=DIR (a run) or --pretrained=PATH --out=DIR")
    if flags.interpolation_steps < 2:
        raise ConfigError(f"--interpolation_steps must be >= 2, got "
                          f"{flags.interpolation_steps}")
    text = flags.attribute
    try:
        flags.attribute = tuple(int(c) for c in text.split(","))
    except ValueError:
        flags.attribute = ()
    if len(flags.attribute) != 2:
        raise ConfigError(f"--attribute must be two classes FROM,TO, e.g. 0,1; got '{text}'")
    cli.init_runtime(flags, overrides)
    config, splits, family, trainer, state = cli.restore(flags, overrides)
    num_classes = splits["test"].num_classes
    if not all(0 <= c < num_classes for c in flags.attribute):
        raise ConfigError(f"--attribute={flags.attribute[0]},{flags.attribute[1]} names a class "
                          f"outside 0..{num_classes - 1}")
    outdir = workdir_lib.path(flags.workdir, workdir_lib.SAMPLES)
    step = int(state.step)
    tag = runs.settings_tag(workdir_lib.read_config(flags.workdir), config)

    def picture(name: str) -> str:
        """DIR/samples/NAME[_KEY=VALUE...]_step_N.png: settings in the name, so pictures
        drawn with other settings never overwrite each other."""
        return workdir_lib.path(outdir, f"{name}{tag}_step_{step:07d}.png")

    if flags.prompt:
        for path in prompt_pictures(family, state, flags, picture("prompts"), config, step):
            print(path)
        return
    if isinstance(family, Translator):
        path = picture("translation_rows")
        if parallel.is_primary():
            viz.save_png(path, viz.translation_grid(trainer.translations(state, flags.num)),
                         title=grid_title(config, step), column_labels=viz.TRANSLATION_COLUMNS)
        print(path)
        return
    images = viz.to_uint8(trainer.sample_images(state, flags.num, index=1), family.value_range)
    written = []
    if parallel.is_primary():
        path = picture("sample_grid")
        classes = family.sampling_classes
        viz.save_png(path, viz.sample_grid(images, classes), title=grid_title(config, step),
                     column_labels=splits["test"].class_labels(classes))
        written.append(path)
    if isinstance(family, LatentModel) and parallel.is_primary():
        written += latent_pictures(family, state, splits, config, flags, picture, step)
    if isinstance(family, LatentGenerator) and parallel.is_primary():
        written += generator_pictures(family, state, splits, config, flags, picture, step)
    if isinstance(family, StyleGenerator) and parallel.is_primary():
        rng = jax.random.fold_in(rng_lib.as_key(state.rng), 30_000)
        written += style_pictures.write_all(family, state, rng, config.sample.truncation_psi,
                                            picture)
    if isinstance(family, NoisingProcess):
        written += process_pictures(family, state, splits, picture)
    for path in written:
        print(path)


def prompt_pictures(family, state: TrainState, flags, path: str, config, step: int
                    ) -> list[str]:
    """flags.num samples of each of flags.prompt (the workdir's tokenizer; unknown words are
    the unknown token, and said so), a row per prompt: the PNG and an .npz (uint8 images
    [prompts, num, H, W, C], key "images", and the prompts)."""
    if not isinstance(family, PromptModel):
        raise ConfigError(f"--prompt: family '{config.family}' is not text-conditioned")
    tokenizer = workdir_lib.read_tokenizer(flags.workdir)
    tokens = tokenizer.encode_all(flags.prompt)  # TokenizerError: a ConfigError, one line
    for text in flags.prompt:
        unknown = tokenizer.unknown_words(text)
        if unknown:
            print(f"warning: '{text}': {', '.join(unknown)} not in the training captions' "
                  f"vocabulary (read as the unknown token)", file=sys.stderr)
    sample = jax.jit(family.sample, static_argnames="num")
    root = jax.random.fold_in(rng_lib.key(config.seed), flags.seed)
    rows = []
    for i, row in enumerate(tokens):
        condition = family.prompt_condition(np.repeat(row[None], flags.num, axis=0))
        rows.append(viz.to_uint8(np.asarray(sample(state, jax.random.fold_in(root, i),
                                                   flags.num, condition)),
                                 family.value_range))
    if not parallel.is_primary():
        return []
    viz.titled_rows(path, rows, [f'"{p}"' for p in flags.prompt],
                    title=grid_title(config, step))
    array_path = path[:-len(".png")] + ".npz"
    np.savez_compressed(array_path, images=np.stack(rows), prompts=np.asarray(flags.prompt))
    return [path, array_path]


def sample_pretrained(flags, overrides: list[str], batch_size: int = 64) -> None:
    """--pretrained: flags.num samples of the folder's model, in batches, to flags.out."""
    folder, config = runs.pretrained_config(flags.pretrained, overrides)
    cli.init_runtime(flags, overrides, config)
    model = runs.load_pretrained(folder, config)
    family = model.family
    state = TrainState(step=jnp.zeros((), jnp.int32), params=model.params, opt_state=(),
                       rng=jnp.zeros((2,), jnp.uint32))
    sample = jax.jit(family.sample, static_argnames="num")
    classes = family.sampling_classes
    root = rng_lib.key(flags.seed)
    batches = []
    for first in range(0, flags.num, batch_size):
        num = min(batch_size, flags.num - first)
        labels = jnp.arange(first, first + num) % classes if classes else None
        batches.append(np.asarray(sample(state, jax.random.fold_in(root, first), num, labels)))
    images = viz.to_uint8(np.concatenate(batches), family.value_range)
    os.makedirs(flags.out, exist_ok=True)
    grid_path = os.path.join(flags.out, "samples.png")
    s = model.config.sample
    steps = model.config.model.num_timesteps if s.sampler == "ddpm" else s.steps
    viz.save_png(grid_path, viz.sample_grid(images, classes),
                 title=f"{os.path.basename(os.path.normpath(flags.pretrained))}: {s.sampler}, "
                       f"{steps} steps",
                 column_labels=[f"class {k}" for k in range(classes)])
    array_path = os.path.join(flags.out, "samples.npz")
    np.savez_compressed(array_path, images=images)
    print(grid_path)
    print(array_path)


def grid_title(config, step: int) -> str:
    """"step N" and the run's sampling settings (sampler, steps, guidance...)."""
    settings = [f"{k} {v}" for k, v in sorted(config.sample.items())
                if k not in ("every_steps", "num", "classifier_workdir")]
    return ", ".join([f"step {step}", *settings])


def attribute_labels(source: str, target: str, alphas) -> dict:
    """save_png's labels of an attribute strip: its direction (between the classes so named)
    and each column's strength."""
    return {"title": f"+ alpha x (mean z of {target} - mean z of {source})",
            "column_labels": [f"{a:.2g}" for a in np.asarray(alphas)]}


def process_pictures(family, state, splits, picture: Callable[[str], str], rows: int = 8,
                     columns: int = 10) -> list[str]:
    """Forward strip: test image i noised at `columns` increasing t (row i). Reverse strip:
    `rows` samples, x_T on the left to x_0 on the right."""
    test = splits["test"]
    x0 = to_model_range(test.images[:rows], test.max_value, family.value_range)
    rng = rng_lib.as_key(state.rng)
    forward = [family.forward_strip(jnp.asarray(x), jax.random.fold_in(rng, i), columns)
               for i, x in enumerate(x0)]
    trajectory = jax.jit(family.trajectory, static_argnames=("num", "keep"))
    final, snapshots = trajectory(state, jax.random.fold_in(rng, 10_000), num=rows,
                                  keep=columns - 1)
    # [keep, rows, ...] -> row-major [rows, columns, ...], mapped from the process's space
    # (pixels or codes) to images.
    states = jnp.concatenate([snapshots, final[None]])
    reverse = np.asarray(jax.jit(family.to_images)(states.reshape((-1,) + states.shape[2:])))
    reverse = reverse.reshape(states.shape[:2] + reverse.shape[1:]).swapaxes(0, 1)
    paths = []
    if parallel.is_primary():
        for name, strips in (("forward_process", np.stack(forward)), ("reverse_process", reverse)):
            images = viz.to_uint8(np.clip(strips.reshape((-1,) + strips.shape[2:]), -1, 1),
                                  family.value_range)
            paths.append(picture(name))
            viz.save_png(paths[-1], viz.grid(images, rows=strips.shape[0]), title={
                "forward_process": "forward process: test images noised at increasing t",
                "reverse_process": "reverse process: x_T (left) to x_0 (right)"}[name])
    return paths


def latent_pictures(family, state, splits, config, flags, picture: Callable[[str], str],
                    step: int) -> list[str]:
    params = state.params_for_sampling()
    test = splits["test"]
    count = min(len(test), 2000)
    x = jnp.asarray(to_model_range(test.images[:count], test.max_value, family.value_range))
    y = test.labels[:count]
    conditional = family.num_classes > 0
    labels = jnp.asarray(y) if conditional else None
    other = int(np.argmax(y != y[0]))  # the first test image of another class
    names = test.class_labels()
    rows = []
    for spherical in (False, True):
        rows.append(latent.interpolate(family, params, x[0], x[other], flags.interpolation_steps,
                                       spherical,
                                       *((int(y[0]), int(y[other])) if conditional else ())))
    paths = [picture("interpolation")]
    strip = viz.to_uint8(np.concatenate(rows), family.value_range)
    viz.save_png(paths[-1], viz.grid(strip, rows=2), row_labels=["linear", "spherical"],
                 title=f"between two test images ({names[int(y[0])]}, {names[int(y[other])]})")

    if not conditional:
        source, target = flags.attribute
        means = latent.class_means(family, params, x, jnp.asarray(y), test.num_classes)
        direction = means[target] - means[source]
        alphas = jnp.linspace(0.0, 1.5, flags.interpolation_steps)
        starts = np.flatnonzero(y == source)[:4]
        strips = [latent.attribute_strip(family, params, x[i], direction, alphas) for i in starts]
        paths.append(picture(f"attribute_{source}_to_{target}"))
        viz.save_png(paths[-1], viz.grid(viz.to_uint8(np.concatenate(strips), family.value_range),
                                         rows=len(starts)),
                     **attribute_labels(names[source], names[target], alphas))

    if family.latent_dim == 2:
        z = np.asarray(latent.encode_mean(family, params, x, labels))
        paths.append(picture("latent_scatter"))
        viz.scatter_2d(paths[-1], z, y, f"test latents (posterior means), step {step}")
    return paths


def generator_pictures(family, state, splits, config, flags, picture: Callable[[str], str],
                       step: int) -> list[str]:
    rng = jax.random.fold_in(rng_lib.as_key(state.rng), 20_000)
    z = family.latents(rng, 2000)
    t = jnp.linspace(0.0, 1.0, flags.interpolation_steps)
    num_classes = family.num_classes
    rows = []
    for pair in range(4):  # for each pair of draws: the line, then the great circle
        for path in (latent.lerp, latent.slerp):
            labels = jnp.full((flags.interpolation_steps,), pair % num_classes) \
                if num_classes else None
            rows.append(family.from_latents(state, path(z[2 * pair], z[2 * pair + 1], t),
                                            labels))
    paths = [picture("interpolation")]
    viz.save_png(paths[-1], viz.grid(viz.to_uint8(np.concatenate(rows), family.value_range),
                                     rows=len(rows)),
                 row_labels=["linear", "spherical"] * 4, title="between pairs of prior draws")
    if num_classes:
        z_rows = jnp.repeat(z[:8], num_classes, axis=0)
        labels = jnp.tile(jnp.arange(num_classes), 8)
        paths.append(picture("class_grid"))
        viz.save_png(paths[-1], viz.grid(viz.to_uint8(
            np.asarray(family.from_latents(state, z_rows, labels)), family.value_range), rows=8),
            title="one z per row, in every class",
            column_labels=splits["test"].class_labels(num_classes))
        return paths
    # Attribute vectors (Radford et al. 2016): the mean z of samples the classifier calls
    # TO minus that of samples it calls FROM, added to draws of class FROM.
    classifier = runs.evaluation_classifier(config, splits)
    predicted = jnp.concatenate([classifier.apply(to_unit_range(
        family.from_latents(state, chunk), family.value_range))["label"]
        for chunk in jnp.split(z, 4)])
    means = latent.mean_by_class(z, predicted, classifier.num_classes)
    source, target = flags.attribute
    names = splits["test"].class_labels()
    starts = np.flatnonzero(np.asarray(predicted) == source)[:4]
    if len(starts) == 0 or not bool(jnp.all(jnp.isfinite(means[target]))):
        print(f"no attribute vector: the generator's 2000 draws contain no class {source} "
              f"or no class {target} (by the classifier)")
        return paths
    alphas = jnp.linspace(0.0, 1.5, flags.interpolation_steps)
    strips = [family.from_latents(state, z[i] + alphas[:, None] * (means[target] - means[source]))
              for i in starts]
    paths.append(picture(f"attribute_{source}_to_{target}"))
    viz.save_png(paths[-1], viz.grid(viz.to_uint8(np.concatenate(strips), family.value_range),
                                     rows=len(starts)),
                 **attribute_labels(names[source], names[target], alphas))
    return paths

