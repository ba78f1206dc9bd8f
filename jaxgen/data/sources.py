"""Image datasets as in-memory integer arrays: scikit-learn digits, tfds, IDX files, image
folders (`folder.py`), and synthetic random pixels for benchmarks and smoke tests; a class
filter, a part of a fixed partition and a fixed transform of any of them; and two unpaired
domains (CycleGAN), each any of the above.

Every source returns `Split`s of raw integer pixels; scaling, binarisation and
batching happen in `pipeline.py`, the same for every source. The datasets this
codebase targets (digits, MNIST-likes, CIFAR) fit in host memory many times over.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from typing import Any

import numpy as np

from jaxgen.data import captions, folder
from jaxgen.core.quiet import only_errors

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# The label names tfds gives fashion_mnist, for the copy read from Debian's IDX files.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetError(RuntimeError):
    """A dataset that cannot be found or read."""


@dataclasses.dataclass(frozen=True)
class Split:
    """images: uint8 [N, H, W, C] with values in 0..max_value; labels: int32 [N];
    class_names: one per class where the source has them (tfds, Fashion-MNIST), else ();
    captioned data (`captions.py`): tokens int32 [N, K, L], K captions of L token ids per
    image (0: padding), and the tokenizer that wrote them. Two-domain data: this split is
    domain A's, and domain_b the same split of domain B (images of the same shape, any
    number of them, never paired with A's)."""
    images: np.ndarray
    labels: np.ndarray
    max_value: int
    num_classes: int
    class_names: tuple[str, ...] = ()
    tokens: np.ndarray | None = None
    tokenizer: Any = None
    domain_b: "Split | None" = None

    def __post_init__(self):
        if self.images.ndim != 4:
            raise DatasetError(f"images must be [N, H, W, C], got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DatasetError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(
                self.labels.max()) < self.num_classes:
            raise DatasetError(f"labels range over {self.labels.min()}..{self.labels.max()}, "
                               f"outside the {self.num_classes} classes 0..{self.num_classes - 1}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DatasetError(f"{len(self.class_names)} class names for {self.num_classes} "
                               "classes")
        if self.tokens is not None and (self.tokens.ndim != 3
                                        or len(self.tokens) != len(self.images)):
            raise DatasetError(f"tokens must be [N, K, L] for {len(self.images)} images, got "
                               f"shape {self.tokens.shape}")
        if self.domain_b is not None and self.domain_b.images.shape[1:] != self.images.shape[1:]:
            raise DatasetError(f"domain B's images are {self.domain_b.images.shape[1:]} but "
                               f"domain A's {self.images.shape[1:]}: give both one size "
                               "(data.domain_*.image_size, channels or pad_to)")

    def __len__(self) -> int:
        return len(self.images)

    def class_labels(self, count: int | None = None) -> list[str]:
        """Picture labels of classes 0..count-1 (default all): their names, else numbers."""
        count = self.num_classes if count is None else count
        return [self.class_names[k] if k < len(self.class_names) else str(k)
                for k in range(count)]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a model family needs to know of its data; captioned data adds the vocabulary's
    size and the token length, class_prompts: the token ids [L] of the prompt "a CLASS"
    for each class (what a text-conditioned model samples for a class label), and
    empty_prompt: the ids [L] of "" (classifier-free guidance's unconditional input)."""
    image_shape: tuple[int, int, int]
    num_classes: int
    max_value: int
    vocab_size: int = 0
    max_tokens: int = 0
    class_prompts: tuple[tuple[int, ...], ...] = ()
    empty_prompt: tuple[int, ...] = ()
    two_domains: bool = False

    @classmethod
    def of(cls, split: Split) -> "DataSpec":
        spec = cls(tuple(split.images.shape[1:]), split.num_classes, split.max_value,
                   two_domains=split.domain_b is not None)
        if split.tokens is None:
            return spec
        tokenizer = captions.tokenizer_of(split)
        prompts = tokenizer.encode_all(captions.class_prompts(split))
        return dataclasses.replace(spec, vocab_size=len(tokenizer),
                                   max_tokens=tokenizer.max_tokens,
                                   class_prompts=tuple(map(tuple, prompts.tolist())),
                                   empty_prompt=tuple(tokenizer.encode("").tolist()))


def from_config(data) -> dict[str, Split]:
    """The splits of a `config.data` section; captioned (`captions.py`) where
    data.captions asks for it; two unpaired domains where data.source is "domains"."""
    if data.source == "domains":
        if "domain_a" not in data or "domain_b" not in data:
            raise DatasetError("data.source=domains needs data.domain_a and data.domain_b "
                               "(a two-domain family such as cyclegan declares them)")
        a, b = one_source(data.domain_a, "data.domain_a"), one_source(data.domain_b,
                                                                      "data.domain_b")
        return {name: dataclasses.replace(a[name], domain_b=b[name]) for name in a}
    splits = one_source(data)
    if data.get("captions", ""):
        try:
            splits = captions.add_captions(splits, tuple(data.caption_holdout), data.max_tokens,
                                           data.get("tokenizer", "words"))
        except captions.CaptionError as e:
            raise DatasetError(str(e)) from None
    return splits


def one_source(data, where: str = "data") -> dict[str, Split]:
    """The splits of one dataset's keys (`config_keys.SOURCE_KEYS` under `where`): the source,
    then its class filter, part, transform and padding."""
    if data.source == "folder":
        if not data.data_dir:
            raise DatasetError(f"{where}.source=folder needs {where}.data_dir, a folder of "
                               "images")
        splits = load_folder(data.data_dir, data.get("image_size", 0), data.get("channels", 3),
                             data.get("on_bad_file", "error"), data.get("test_fraction", 0.1))
    else:
        splits = load(data.source, data.name, data.data_dir,
                      (tuple(data.synthetic_shape), data.synthetic_size, data.synthetic_classes),
                      tuple(data.get("tfds_splits", TFDS_SPLITS)), data.get("image_size", 0))
    image_size = data.get("image_size", 0)
    if image_size and data.source not in ("folder", "tfds"):  # those resize as they decode
        splits = {name: dataclasses.replace(split, images=np.stack(
            [folder.fit_array(x, image_size) for x in split.images]))
            for name, split in splits.items()}
    classes = tuple(data.get("classes", ()))
    if classes:
        splits = {name: keep_classes(split, classes, f"{where}.classes ({name})")
                  for name, split in splits.items()}
    part = tuple(data.get("part", (0, 1)))
    if part != (0, 1):
        splits = {name: part_of(split, *part) for name, split in splits.items()}
    if data.get("transform", "none") != "none":
        splits = {name: dataclasses.replace(split, images=transform(split.images, data.transform,
                                                                    split.max_value))
                  for name, split in splits.items()}
    if data.get("pad_to", 0):
        splits = {name: pad(split, data.pad_to) for name, split in splits.items()}
    return splits


def load_folder(directory: str, image_size: int = 0, channels: int = 3,
                on_bad_file: str = "error", test_fraction: float = 0.1) -> dict[str, Split]:
    """A folder of PNG/JPEG images (`folder.py`): {"train": Split, "test": Split}."""
    try:
        arrays, class_names = folder.read_folder(directory, image_size, channels, on_bad_file,
                                                 test_fraction)
    except folder.FolderError as e:
        raise DatasetError(str(e)) from None
    return {name: Split(images, labels, max_value=255, num_classes=max(len(class_names), 1),
                        class_names=tuple(class_names))
            for name, (images, labels) in arrays.items()}


def keep_classes(split: Split, classes: tuple[int, ...], where: str) -> Split:
    """The examples of `classes` only; labels keep their ids (so the whole dataset's
    classifier still names them)."""
    unknown = [c for c in classes if c >= split.num_classes]
    if unknown:
        raise DatasetError(f"{where}: class {unknown[0]} does not exist (the dataset has "
                           f"{split.num_classes} classes)")
    keep = np.isin(split.labels, np.asarray(classes))
    if not keep.any():
        raise DatasetError(f"{where}: no example of classes {list(classes)}")
    return subset(split, np.flatnonzero(keep))


def part_of(split: Split, k: int, n: int) -> Split:
    """Part k of n disjoint, near-equal parts of a fixed permutation (seed 0) of the split,
    in the split's order: two domains built from one dataset never share an image."""
    order = np.random.default_rng(0).permutation(len(split))
    return subset(split, np.sort(np.array_split(order, n)[k]))


def subset(split: Split, index: np.ndarray) -> Split:
    tokens = None if split.tokens is None else split.tokens[index]
    return dataclasses.replace(split, images=split.images[index], labels=split.labels[index],
                               tokens=tokens)


INVERSE_TRANSFORMS = {"rotate90": "rotate270"}  # the others undo themselves


def transform(images: np.ndarray, kind: str, max_value: float, inverse: bool = False
              ) -> np.ndarray:
    """A fixed, invertible transform of images [N, H, W, C] with values in 0..max_value
    (uint8, or floats): invert (v -> max_value - v), flip_vertical (upside down),
    flip_horizontal, rotate90 (counter-clockwise; square images), flip_invert (upside down
    and inverted); inverse: the transform that undoes `kind`."""
    if inverse:
        kind = INVERSE_TRANSFORMS.get(kind, kind)
    if kind == "invert":
        if np.issubdtype(images.dtype, np.integer):
            return (max_value - images.astype(np.int32)).astype(images.dtype)
        return max_value - images
    if kind == "flip_vertical":
        return images[:, ::-1].copy()
    if kind == "flip_horizontal":
        return images[:, :, ::-1].copy()
    if kind in ("rotate90", "rotate270"):
        if images.shape[1] != images.shape[2]:
            raise DatasetError(f"transform rotate90 needs square images, got "
                               f"{images.shape[1]}x{images.shape[2]}")
        return np.rot90(images, 1 if kind == "rotate90" else 3, axes=(1, 2)).copy()
    if kind == "flip_invert":
        return transform(transform(images, "flip_vertical", max_value), "invert", max_value)
    raise DatasetError(f"unknown transform '{kind}'")


def pad(split: Split, size: int) -> Split:
    """split with its images padded with zeros to [size, size], centred (the extra pixel of an
    odd margin at the bottom and right)."""
    h, w = split.images.shape[1:3]
    if size < h or size < w:
        raise DatasetError(f"data.pad_to={size} is smaller than the {h}x{w} images")
    top, left = (size - h) // 2, (size - w) // 2
    images = np.pad(split.images, ((0, 0), (top, size - h - top), (left, size - w - left),
                                   (0, 0)))
    return dataclasses.replace(split, images=images)


TFDS_SPLITS = ("train", "test")


def load(source: str, name: str = "", data_dir: str = "",
         synthetic: tuple[tuple[int, ...], int, int] = ((32, 32, 3), 1024, 10),
         tfds_splits: tuple[str, str] = TFDS_SPLITS, image_size: int = 0) -> dict[str, Split]:
    """Returns {"train": Split, "test": Split} for a `config.data` source, whose images have
    one shape and one range. synthetic: (shape, training images, classes) of source=synthetic;
    tfds_splits: the tfds splits read as train and test; image_size: tfds images resized and
    centre-cropped to it (datasets of mixed sizes)."""
    if source == "synthetic":
        splits = load_synthetic(*synthetic)
    elif source == "digits":
        splits = load_digits()
    elif source == "idx":
        splits = load_idx_dir(data_dir or DEBIAN_FASHION_MNIST,
                              () if data_dir else FASHION_MNIST_CLASSES)
    elif source == "tfds":
        splits = load_tfds(name, data_dir or None, tfds_splits, image_size)
    else:
        raise DatasetError(f"unknown data source '{source}'")
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DatasetError(f"train images are {train.images.shape[1:]} but test images "
                           f"{test.images.shape[1:]}")
    if len(train) == 0 or len(test) == 0:
        raise DatasetError(f"the {'train' if len(train) == 0 else 'test'} split is empty")
    return splits


def load_digits(test_fraction: float = 0.2) -> dict[str, Split]:
    """scikit-learn's 1,797 8x8 digits (values 0..16), split by a fixed permutation."""
    from sklearn.datasets import load_digits as sklearn_digits
    bunch = sklearn_digits()
    images = bunch.images.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(images))
    num_test = int(round(test_fraction * len(images)))
    test, train = order[:num_test], order[num_test:]
    return {
        "train": Split(images[train], labels[train], max_value=16, num_classes=10),
        "test": Split(images[test], labels[test], max_value=16, num_classes=10),
    }


def load_synthetic(shape: tuple[int, ...], size: int, num_classes: int) -> dict[str, Split]:
    """Uniform random 8-bit pixels [size, H, W, C] and labels, the same for every call: data
    of a real dataset's shape where its content does not matter (throughput, smoke tests)."""
    if len(shape) != 3:
        raise DatasetError(f"data.synthetic_shape must be [H, W, C], got {list(shape)}")
    rng = np.random.default_rng(0)
    num_test = max(size // 10, 1)
    images = rng.integers(0, 256, (size + num_test, *shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size + num_test).astype(np.int32)
    return {"train": Split(images[:size], labels[:size], 255, num_classes),
            "test": Split(images[size:], labels[size:], 255, num_classes)}


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) of unsigned bytes."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4:
        raise DatasetError(f"IDX file {path} is truncated")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"IDX file {path} holds {body.size} values, header says {shape}")
    return body.reshape(shape)


def load_idx_dir(directory: str, class_names: tuple[str, ...] = ()) -> dict[str, Split]:
    """A folder of the four standard (Fashion-)MNIST IDX files (which hold no class names)."""
    splits = {}
    for split, (image_file, label_file) in IDX_FILES.items():
        image_path, label_path = (os.path.join(directory, f) for f in (image_file, label_file))
        if not os.path.isfile(image_path) or not os.path.isfile(label_path):
            raise DatasetError(f"no IDX files {image_file}, {label_file} in {directory}")
        images = read_idx(image_path)[..., None]
        labels = read_idx(label_path).astype(np.int32)
        splits[split] = Split(images, labels, max_value=255, num_classes=10,
                              class_names=class_names)
    return splits


def load_tfds(name: str, data_dir: str | None, splits: tuple[str, str] = TFDS_SPLITS,
              image_size: int = 0) -> dict[str, Split]:
    """Any tfds image dataset with an "image" and a "label" feature, read without TensorFlow.

    fashion_mnist falls back to Debian's `dataset-fashion-mnist` IDX files (the same
    content tfds would download) when tfds has no prepared copy.
    """
    import tensorflow_datasets as tfds  # lazy: costs a second or more per process

    try:
        # A probe: an unprepared dataset is expected here, and tfds logs a warning about its
        # missing dataset_info.json on the way to the error that sends us to the fallbacks.
        with only_errors("absl"):
            return _tfds_splits(tfds, name, data_dir, False, splits, image_size)
    except DatasetError:
        raise
    except Exception:  # not prepared: tfds raises several kinds
        pass
    if name == "fashion_mnist" and splits == TFDS_SPLITS and not image_size and os.path.isfile(
            os.path.join(DEBIAN_FASHION_MNIST, IDX_FILES["train"][0])):
        return load_idx_dir(DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES)
    try:
        return _tfds_splits(tfds, name, data_dir, True, splits, image_size)
    except Exception as e:  # offline, unknown name, ...
        hint = (" or `apt-get install dataset-fashion-mnist` (Debian's IDX files)"
                if name == "fashion_mnist" else "")
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DatasetError(f"dataset '{name}' is not prepared in tfds data_dir={data_dir} and "
                           f"could not be downloaded ({reason}); prepare it with "
                           f"`tfds build {name}` on a machine with internet{hint}") from None


def _tfds_splits(tfds, name: str, data_dir: str | None, download: bool,
                 names: tuple[str, str], image_size: int) -> dict[str, Split]:
    splits = {}
    for split, tfds_split in zip(TFDS_SPLITS, names):
        source = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=download)
        features = source.dataset_info.features
        if "image" not in features or "label" not in features:
            raise DatasetError(f"tfds dataset '{name}' has no 'image' and 'label' features")
        records = [source[i] for i in range(len(source))]
        pixels = [np.asarray(r["image"], np.uint8) for r in records]
        pixels = [p[..., None] if p.ndim == 2 else p for p in pixels]
        if image_size:
            pixels = [folder.fit_array(p, image_size) for p in pixels]
        if len({p.shape for p in pixels}) > 1:
            raise DatasetError(f"tfds dataset '{name}' split '{tfds_split}' has images of "
                               "several sizes: set data.image_size")
        labels = np.asarray([r["label"] for r in records], dtype=np.int32)
        label = features["label"]
        splits[split] = Split(np.stack(pixels), labels, max_value=255,
                              num_classes=int(label.num_classes),
                              class_names=tuple(getattr(label, "names", None) or ()))
    return splits
