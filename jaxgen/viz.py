"""Pictures: sample grids, image strips, latent scatter plots and loss curves."""

from __future__ import annotations

import os

import numpy as np

from jaxgen.data.ranges import to_unit_range


def to_uint8(images: np.ndarray, value_range: str) -> np.ndarray:
    """images: float [N, H, W, C] in value_range -> uint8 [N, H, W, C]."""
    unit = to_unit_range(np.asarray(images, np.float32), value_range)
    return np.round(unit * 255.0).astype(np.uint8)


def grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] mosaic."""
    n, h, w, c = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top:top + h, left:left + w] = images[i]
    return canvas


def save_png(path: str, image: np.ndarray, min_size: int = 256, max_size: int = 2048) -> None:
    """Saves uint8 [H, W, C]; small images are enlarged (nearest neighbour) until the short
    side reaches min_size or the long side max_size, so 8x8 digits can be seen."""
    from PIL import Image
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    factor = max(1, min(min_size // min(image.shape[:2]), max_size // max(image.shape[:2])))
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    mode_image = image[..., 0] if image.shape[-1] == 1 else image
    tmp = path + ".tmp"
    Image.fromarray(mode_image).save(tmp, format="PNG")
    os.replace(tmp, path)  # a reader never sees half a file


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


def curves(path: str, rows: list[dict], keys: list[str], title: str) -> None:
    """Plots metric `keys` against step from metrics.jsonl rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
