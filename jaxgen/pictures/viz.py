"""Pictures: sample grids, image strips, latent scatter plots and loss curves."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jaxgen.data.ranges import to_unit_range


def to_uint8(images: np.ndarray, value_range: str) -> np.ndarray:
    """images: float [N, H, W, C] in value_range -> uint8 [N, H, W, C]."""
    unit = to_unit_range(np.asarray(images, np.float32), value_range)
    return np.round(unit * 255.0).astype(np.uint8)


def grid(images: np.ndarray, rows: int | None = None, pad: int = 1,
         columns: int | None = None) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] mosaic, filled
    row by row: `columns` wide, or `rows` high (default square)."""
    n, h, w, c = images.shape
    if columns:
        cols, rows = columns, int(np.ceil(n / columns))
    else:
        rows = rows or int(np.ceil(np.sqrt(n)))
        cols = int(np.ceil(n / rows))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top:top + h, left:left + w] = images[i]
    return canvas


def sample_grid(images: np.ndarray, classes: int = 0) -> np.ndarray:
    """Samples as a mosaic: about square, or, for a conditional model whose sample i is of class
    i % classes, one class per column (class k in column k)."""
    if classes:
        return grid(images, columns=classes)
    return grid(images, rows=int(np.sqrt(len(images))))


TRANSLATION_COLUMNS = ("A", "A->B", "A->B->A", "B", "B->A", "B->A->B")


def translation_grid(rows: np.ndarray) -> np.ndarray:
    """uint8 [6, N, H, W, C] (the columns of TRANSLATION_COLUMNS) -> a mosaic of N rows: an
    image of each domain with its translation and its cycle back."""
    six, n = rows.shape[:2]
    return grid(np.swapaxes(rows, 0, 1).reshape(six * n, *rows.shape[2:]), columns=six)


def enlarged(image: np.ndarray, min_size: int = 256, max_size: int = 2048) -> np.ndarray:
    """uint8 [H, W, C] repeated (nearest neighbour) by the largest whole factor that keeps the
    long side within max_size, up to the one that brings the short side to min_size."""
    factor = max(1, min(min_size // min(image.shape[:2]), max_size // max(image.shape[:2])))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_png(path: str, image: np.ndarray, min_size: int = 256, max_size: int = 2048,
             title: str = "", row_labels: Sequence[str] = (),
             column_labels: Sequence[str] = ()) -> None:
    """Saves uint8 [H, W, C]; small images are enlarged (nearest neighbour) until the short
    side reaches min_size or the long side max_size, so 8x8 digits can be seen. A title goes
    above, row labels left of equal-height rows, column labels above equal-width columns."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if column_labels:  # columns wide enough for their labels ("Ankle boot": 60 px)
        min_width = len(column_labels) * (max(_text_width(t) for t in column_labels) + 6)
        min_size = max(min_size, -(-min_width // image.shape[1]) * min(image.shape[:2]))
    image = enlarged(image, min_size, max_size)
    if title or row_labels or column_labels:
        image = labelled(image, title, row_labels, column_labels)
    mode_image = image[..., 0] if image.shape[-1] == 1 else image
    tmp = path + ".tmp"
    Image.fromarray(mode_image).save(tmp, format="PNG")
    os.replace(tmp, path)  # a reader never sees half a file


LINE = 14  # pixels per line of PIL's default bitmap font, with spacing


def _text_width(text: str) -> int:
    from PIL import Image, ImageDraw, ImageFont
    return int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(
        text, font=ImageFont.load_default()))


def labelled(image: np.ndarray, title: str = "", row_labels: Sequence[str] = (),
             column_labels: Sequence[str] = ()) -> np.ndarray:
    """uint8 [H, W, C] on a white canvas with text margins: the title on top, then the column
    labels, row labels on the left (rows and columns of equal size)."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    left = max((measure.textlength(t, font=font) for t in row_labels), default=-8) + 8
    top = LINE * (bool(title) + bool(column_labels)) + (4 if title or column_labels else 0)
    h, w, c = image.shape
    width = max(int(left) + w, int(measure.textlength(title, font=font)) + 8)
    canvas = Image.new("RGB", (width, top + h), "white")
    canvas.paste(Image.fromarray(image[..., 0] if c == 1 else image).convert("RGB"),
                 (int(left), top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 2), title, fill="black", font=font)
    for i, text in enumerate(column_labels):
        x = left + (i + 0.5) * w / len(column_labels) - measure.textlength(text, font=font) / 2
        draw.text((x, top - LINE), text, fill="black", font=font)
    for i, text in enumerate(row_labels):
        draw.text((2, top + (i + 0.5) * h / len(row_labels) - LINE / 2), text, fill="black",
                  font=font)
    out = np.asarray(canvas)
    return out[..., :1] if c == 1 else out


def montage(path: str, pictures: Sequence[str], labels: Sequence[str], height: int = 256
            ) -> None:
    """Pictures (PNG files) side by side, each scaled to `height` pixels and labelled above:
    sample grids over training."""
    from PIL import Image
    tiles = []
    for picture, label in zip(pictures, labels):
        with Image.open(picture) as image:
            image = image.convert("RGB")
            width = max(1, round(image.width * height / image.height))
            tile = np.asarray(image.resize((width, height), Image.NEAREST))
        tiles.append(labelled(tile, title=label))
    gap = np.full((tiles[0].shape[0], 8, 3), 255, np.uint8)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    save_png(path, row, min_size=1)


def titled_rows(path: str, rows: Sequence[np.ndarray], titles: Sequence[str],
                title: str = "", min_width: int = 512) -> None:
    """Rows of images, uint8 [N, H, W, C] each, one mosaic row per entry with its title (a
    prompt) written above it: a prompt grid."""
    mosaics = [grid(row, rows=1) for row in rows]
    factor = max(1, -(-min_width // max(m.shape[1] for m in mosaics)))
    strips = [labelled(m.repeat(factor, 0).repeat(factor, 1), title=text)
              for m, text in zip(mosaics, titles)]
    strips = [s if s.shape[-1] == 3 else np.repeat(s, 3, axis=-1) for s in strips]
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255)
              for s in strips]
    save_png(path, np.concatenate(strips), min_size=1, title=title)


def scatter_2d(path: str, points: np.ndarray, labels: np.ndarray, title: str) -> None:
    """points: [N, 2] latent codes, labels: [N] int, coloured by class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 6))
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
    ax.legend(*sc.legend_elements(), title="label", loc="best", fontsize=7)
    ax.set_title(title)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


TRACKED = ("fid", "recall", "classes_covered")  # sample metrics given their own panels


def curves(path: str, rows: list[dict], keys: list[str]) -> dict[str, list[str]]:
    """Training curves from metrics.jsonl rows: the train split's `keys`, the test split's
    same keys (dashed) on one panel, then one panel per tracked sample metric (TRACKED) the
    test rows hold (`eval.track_samples`). Returns {panel title: its line labels}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def points(split, key):
        return [(r["step"], r[key]) for r in rows if r.get("split") == split and key in r]
    tracked = [k for k in TRACKED if points("test", k)]
    fig, axes = plt.subplots(1, 1 + len(tracked), figsize=(7 + 3.5 * len(tracked), 4),
                             squeeze=False)
    losses = axes[0, 0]
    for i, key in enumerate(keys):
        for split, style in (("train", "-"), ("test", "--")):
            found = points(split, key)
            if found:
                losses.plot(*zip(*found), style, color=f"C{i}", label=f"{split} {key}",
                            marker="o" if split == "test" and len(found) < 20 else None)
    losses.set_title(", ".join(keys))
    for ax, key in zip(axes[0, 1:], tracked):
        ax.plot(*zip(*points("test", key)), "o-", color="C3", label=key)
        ax.set_title(f"{key} (tracked samples)")
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if losses.lines:
        losses.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    drawn = {ax.get_title(): [line.get_label() for line in ax.lines] for ax in axes[0]}
    plt.close(fig)
    return drawn
