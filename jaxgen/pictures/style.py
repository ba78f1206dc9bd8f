"""Pictures of a style-based generator (`contract.StyleGenerator`, StyleGAN), as in the
papers' figures: style mixing (Karras et al. 2019, fig. 3), the truncation trick (fig. 8),
per-layer noise (fig. 4: one w, several noise draws, and the per-pixel standard deviation
over many draws), and interpolation in W against interpolation in Z (the path-length
argument of sec. 4.2).

Every function returns (uint8 mosaic [H, W, C], labels for viz.save_png). The fixed noise of
`synthesis(state, ws)` is used wherever noise is not the subject, and w is truncated with
`psi` (the run's sample.truncation_psi) except in the truncation sweep.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.pictures import latent, viz

TRUNCATION_PSIS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


def style_ranges(num_ws: int) -> dict[str, range]:
    """The style inputs of coarse, middle and fine resolutions, two per resolution as in the
    paper's grouping: coarse = 4x4 and 8x8 (4x4 alone at two resolutions), fine = the
    highest resolution, middle = those between (absent at three resolutions or fewer)."""
    resolutions = num_ws // 2
    coarse = max(1, min(2, resolutions - 1))
    ranges = {"coarse": range(0, 2 * coarse), "middle": range(2 * coarse, num_ws - 2),
              "fine": range(num_ws - 2, num_ws)}
    return {name: r for name, r in ranges.items() if len(r)}


def _labels(family, num: int, offset: int = 0):
    classes = family.sampling_classes
    return (jnp.arange(offset, offset + num) % classes) if classes else None


def _ws(family, state, z, labels, psi: float) -> jax.Array:
    """z [B, L] -> truncated ws [B, num_ws, w_dim] (one w for every layer)."""
    w = family.mapping(state, z, labels)
    w_avg = family.average_w(state)
    w = w_avg + psi * (w - w_avg)
    return jnp.repeat(w[:, None], family.num_ws, axis=1)


def _uint8(family, images) -> np.ndarray:
    return viz.to_uint8(np.asarray(images), family.value_range)


def style_mixing(family, state, rng, psi: float, sources: int = 5, rows_per_range: int = 2):
    """Columns: sources A (top row); rows: sources B (left column), each copying B's styles
    of one range (coarse, middle, fine) into every A."""
    ranges = style_ranges(family.num_ws)
    num_rows = rows_per_range * len(ranges)
    a_rng, b_rng = jax.random.split(rng)
    ws_a = _ws(family, state, family.latents(a_rng, sources), _labels(family, sources), psi)
    ws_b = _ws(family, state, family.latents(b_rng, num_rows), _labels(family, num_rows, 3), psi)
    layer = jnp.arange(family.num_ws)[None, :, None]
    mixed, row_labels = [], [""]
    for r, (name, styles) in enumerate(x for x in ranges.items() for _ in range(rows_per_range)):
        from_b = (layer >= styles.start) & (layer < styles.stop)
        mixed.append(jnp.where(from_b, ws_b[r][None], ws_a))
        row_labels.append(f"{name} from B")
    images_a = _uint8(family, family.synthesis(state, ws_a))
    images_b = _uint8(family, family.synthesis(state, ws_b))
    images_mixed = _uint8(family, family.synthesis(state, jnp.concatenate(mixed)))
    blank = np.full_like(images_a[:1], 255)
    cells = [blank, images_a]
    for r in range(num_rows):
        cells += [images_b[r:r + 1], images_mixed[r * sources:(r + 1) * sources]]
    mosaic = viz.grid(np.concatenate(cells), columns=sources + 1)
    return mosaic, {"row_labels": row_labels, "column_labels": ["B"] + ["A"] * sources,
                    "title": "style mixing: B's styles of one range in each A"}


def truncation_sweep(family, state, rng, rows: int = 6, psis=TRUNCATION_PSIS):
    """One z per row at psi = 1 ... 0: w_avg + psi (w - w_avg); psi 0 is the average w."""
    z = family.latents(rng, rows)
    ws = jnp.concatenate([_ws(family, state, z[i:i + 1], _labels(family, 1, i), psi)
                          for i in range(rows) for psi in psis])
    mosaic = viz.grid(_uint8(family, family.synthesis(state, ws)), columns=len(psis))
    return mosaic, {"column_labels": [f"psi {p:g}" for p in psis],
                    "title": "truncation trick: one z per row"}


def noise_variation(family, state, rng, psi: float, rows: int = 4, draws: int = 6,
                    std_draws: int = 64):
    """One w per row: `draws` images with different noise, then the per-pixel standard
    deviation over std_draws noise draws (white: the most variation)."""
    z_rng, noise_rng = jax.random.split(rng)
    ws = _ws(family, state, family.latents(z_rng, rows), _labels(family, rows), psi)
    cells = []
    for r in range(rows):
        repeated = jnp.repeat(ws[r:r + 1], std_draws, axis=0)
        images = np.asarray(family.synthesis(state, repeated, jax.random.fold_in(noise_rng, r)),
                            np.float32)
        std = images.std(axis=0).mean(axis=-1, keepdims=True)  # [H, W, 1]
        std_map = np.repeat(std / max(float(std.max()), 1e-8), images.shape[-1], axis=-1)
        cells += [_uint8(family, images[:draws]), np.round(std_map * 255).astype(np.uint8)[None]]
    mosaic = viz.grid(np.concatenate(cells), columns=draws + 1)
    return mosaic, {"column_labels": [f"noise {i + 1}" for i in range(draws)] + ["std"],
                    "title": "per-layer noise: one w per row"}


def w_against_z(family, state, rng, psi: float, pairs: int = 4, steps: int = 10):
    """For each pair of draws: the spherical path in Z (then mapped), and the straight path
    between their w in W."""
    z = family.latents(rng, 2 * pairs)
    t = jnp.linspace(0.0, 1.0, steps)
    ws, row_labels = [], []
    for p in range(pairs):
        classes = family.sampling_classes
        labels = jnp.full((steps,), p % classes) if classes else None
        ws.append(_ws(family, state, latent.slerp(z[2 * p], z[2 * p + 1], t), labels, psi))
        ends = _ws(family, state, z[2 * p:2 * p + 2],
                   None if labels is None else labels[:2], psi)[:, 0]
        path = latent.lerp(ends[0], ends[1], t)
        ws.append(jnp.repeat(path[:, None], family.num_ws, axis=1))
        row_labels += ["Z", "W"]
    mosaic = viz.grid(_uint8(family, family.synthesis(state, jnp.concatenate(ws))),
                      columns=steps)
    return mosaic, {"row_labels": row_labels,
                    "title": "interpolation in Z (spherical) and in W (linear)"}


def write_all(family, state, rng, psi: float, picture) -> list[str]:
    """The four pictures, saved at picture(name); returns their paths."""
    makers = {"style_mixing": lambda r: style_mixing(family, state, r, psi),
              "truncation": lambda r: truncation_sweep(family, state, r),
              "noise": lambda r: noise_variation(family, state, r, psi),
              "w_against_z": lambda r: w_against_z(family, state, r, psi)}
    paths = []
    for i, (name, make) in enumerate(makers.items()):
        mosaic, labels = make(jax.random.fold_in(rng, i))
        paths.append(picture(name))
        viz.save_png(paths[-1], mosaic, **labels)
    return paths
