"""A folder of PNG/JPEG images as a dataset (`data.source=folder`).

Layouts, as torchvision's ImageFolder and tfds' ImageFolder read them:

    DIR/train/..., DIR/test/...   the two splits (else a seeded split of DIR itself)
    SPLIT/CLASS/*.png             one subfolder per class: labels from the sorted names
    SPLIT/*.jpg                   no subfolders: one class

Every image is decoded with Pillow, converted to RGB or grayscale, its shorter side resized
to `image_size` (antialiased bicubic) and a centred square cropped. Files of other types
are ignored; an unreadable image stops loading with its path, or is skipped and counted.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os

import numpy as np

log = logging.getLogger("jaxgen")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class FolderError(RuntimeError):
    """An image folder that cannot be read: a missing folder or an unreadable file."""


# (images uint8 [N, S, S, C], labels int32 [N]) per split, and the sorted class names.
Images = dict[str, tuple[np.ndarray, np.ndarray]]
SPLIT_FOLDERS = ("train", "test")


def read_folder(directory: str, image_size: int = 0, channels: int = 3,
                on_bad_file: str = "error", test_fraction: float = 0.1
                ) -> tuple[Images, list[str]]:
    """({"train": (images, labels), "test": ...}, class names) of uint8 images
    [N, S, S, channels] (S = image_size, or the files' common size when 0)."""
    if not os.path.isdir(directory):
        raise FolderError(f"image folder {directory} does not exist")
    if all(os.path.isdir(os.path.join(directory, s)) for s in SPLIT_FOLDERS):
        listed = {s: list_images(os.path.join(directory, s)) for s in SPLIT_FOLDERS}
        class_names = listed["train"][1]
        unknown = sorted(set(listed["test"][1]) - set(class_names))
        if unknown:
            raise FolderError(f"{directory}/test has class folder '{unknown[0]}' that "
                               "train/ lacks")
        files = {s: [(path, class_names.index(name) if name else 0)
                     for path, name in listed[s][0]] for s in SPLIT_FOLDERS}
    else:
        entries, class_names = list_images(directory)
        labelled = [(path, class_names.index(name) if name else 0) for path, name in entries]
        order = np.random.default_rng(0).permutation(len(labelled))
        num_test = min(max(int(round(test_fraction * len(labelled))), 1), len(labelled) - 1)
        if len(labelled) < 2:
            raise FolderError(f"image folder {directory} holds {len(labelled)} image(s): too "
                               "few to split into train and test")
        files = {"test": [labelled[i] for i in sorted(order[:num_test])],
                 "train": [labelled[i] for i in sorted(order[num_test:])]}
    splits = {name: decode_all(entries, image_size, channels, on_bad_file)
              for name, entries in files.items()}
    shapes = {images.shape[1:] for images, _ in splits.values()}
    if len(shapes) > 1:
        raise FolderError(f"train and test images of {directory} differ in size "
                          f"({sorted(shapes)}): set data.image_size")
    return splits, class_names


def list_images(directory: str) -> tuple[list[tuple[str, str]], list[str]]:
    """([(path, class folder name or "")], sorted class names) of one split's folder."""
    names = sorted(os.listdir(directory))
    classes = [n for n in names if os.path.isdir(os.path.join(directory, n))]
    loose = [n for n in names if is_image(n)]
    if classes and loose:
        raise FolderError(f"{directory} holds both images ({loose[0]}) and class folders "
                           f"({classes[0]}): put every image in a class folder")
    if not classes:
        entries = [(os.path.join(directory, n), "") for n in loose]
    else:
        entries = []
        for name in classes:
            for root, dirs, found in os.walk(os.path.join(directory, name)):
                dirs.sort()
                entries += [(os.path.join(root, f), name) for f in sorted(found) if is_image(f)]
    if not entries:
        raise FolderError(f"no PNG or JPEG images in {directory}")
    return entries, classes


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def decode_all(entries: list[tuple[str, int]], image_size: int, channels: int,
               on_bad_file: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, H, W, channels], labels int32 [N]) of the readable files."""
    # Pillow decodes outside the GIL: threads keep the order and use every core.
    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda e: decode(e[0], image_size, channels), entries))
    bad = [(path, result) for (path, _), result in zip(entries, decoded)
           if isinstance(result, str)]
    if bad and on_bad_file == "error":
        path, reason = bad[0]
        raise FolderError(f"cannot read image {path}: {reason} (data.on_bad_file=skip "
                           "skips unreadable files)")
    if bad:
        log.warning("skipped %d unreadable image(s) of %d, the first %s: %s", len(bad),
                    len(entries), *bad[0])
    kept = [(result, label) for (_, label), result in zip(entries, decoded)
            if not isinstance(result, str)]
    if not kept:
        raise FolderError(f"none of the {len(entries)} images could be read")
    shape = kept[0][0].shape
    for (path, _), result in zip(entries, decoded):
        if not isinstance(result, str) and result.shape != shape:
            raise FolderError(f"image {path} is {result.shape[1]}x{result.shape[0]}, others "
                               f"{shape[1]}x{shape[0]}: set data.image_size to resize them")
    images = np.stack([image for image, _ in kept])
    return images, np.asarray([label for _, label in kept], np.int32)


def unreadable(path: str) -> str:
    """Why Pillow cannot read the image at path; "" when it can (its header is checked
    without decoding the pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return ""


def decode(path: str, image_size: int, channels: int) -> np.ndarray | str:
    """uint8 [H, W, channels], or the reason the file cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    array = np.asarray(fit(image, image_size) if image_size else image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def fit(image, size: int):
    """A PIL image with its shorter side resized to `size` (antialiased bicubic) and a
    centred size x size square cropped."""
    from PIL import Image

    width, height = image.size
    scale = size / min(width, height)
    scaled = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(scaled, Image.Resampling.BICUBIC)
    left, top = (scaled[0] - size) // 2, (scaled[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def fit_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> [size, size, C], as `fit`."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    out = np.asarray(fit(image, size), dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out
