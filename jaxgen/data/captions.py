"""Captions for datasets that have none: the class name and attributes measured from the pixels.

Fashion-MNIST (and digits) come with labels only. To train text conditioning on them, each
image gets captions built from what is known of it: its class and two attributes measured on
its pixels, each a two-way split at the class's training median (so within every class each
value holds for half the images and the attributes are no proxy for the class):

- brightness: the mean intensity of the item's pixels (those above 10% of the range): dark |
  bright;
- size: the fraction of the image the item covers: small | large.

Every image has one caption per template in `TEMPLATES` (several phrasings: "a dark ankle
boot", "ankle boot, small, dark", ...); the training stream picks one per step from the seed
(`pipeline.TrainStream`). Held-out combinations ("bright sandal") are never named in a training
caption: an image with a held-out attribute-class pair is captioned by the templates that do not
mention that attribute, so the words exist but never appear together, and a prompt naming the
pair tests composition. The same measurement scores samples (`Captioner.measure`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from jaxgen.text.bpe import ClipTokenizer
from jaxgen.text.tokenizer import Tokenizer, TokenizerError

# A `sources.Split` (which imports this module; splits are used by their fields here).
Split = Any


class CaptionError(ValueError):
    """Captions that cannot be made: a bad held-out pair, a caption too long for the tokens."""

ATTRIBUTES: dict[str, tuple[str, str]] = {"brightness": ("dark", "bright"),
                                          "size": ("small", "large")}
ITEM_THRESHOLD = 0.1  # a pixel above 10% of the range belongs to the item

# (template, the attributes it names); {class}, {brightness}, {size} are filled in.
TEMPLATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a {class}", ()),
    ("a {brightness} {class}", ("brightness",)),
    ("a {size} {class}", ("size",)),
    ("a {size} {brightness} {class}", ("size", "brightness")),
    ("{class}, {size}, {brightness}", ("size", "brightness")),
    ("a photo of a {brightness} {class}", ("brightness",)),
)


def class_word(name: str) -> str:
    """A class name as a caption says it: 'T-shirt/top' -> 't-shirt', 'Ankle boot' ->
    'ankle boot'."""
    return name.split("/")[0].strip().lower()


def statistics(images: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """images [N, H, W, C] in [0, max_value] (integers or floats) -> float32 [N, 2]:
    (brightness, size) of each on the [0, 1] scale, the ATTRIBUTES' order."""
    grey = images[..., 0] if images.shape[-1] == 1 else images.mean(axis=-1)
    item = grey > ITEM_THRESHOLD * max_value
    count = item.sum(axis=(1, 2))
    size = count / (grey.shape[1] * grey.shape[2])
    total = np.where(item, grey, 0).sum(axis=(1, 2), dtype=np.float64)
    brightness = total / np.maximum(count, 1) / max_value
    return np.stack([brightness, size], axis=1).astype(np.float32)


def balanced_threshold(values: np.ndarray) -> float:
    """The t among `values` for which values > t holds for the share nearest one half: the
    median, where many values are tied (8x8 digits' sizes are multiples of 1/64) the tied
    value on whichever side balances the split better."""
    if not len(values):
        return 0.0
    candidates = np.unique(values)
    above = 1.0 - np.searchsorted(np.sort(values), candidates, side="right") / len(values)
    return float(candidates[np.argmin(np.abs(above - 0.5))])


@dataclasses.dataclass(frozen=True)
class Captioner:
    """class_words: one per class; thresholds float32 [classes, 2]: the training medians of
    brightness and size per class (`balanced_threshold`); holdout: (attribute value, class
    index) pairs no training caption names."""
    class_words: tuple[str, ...]
    thresholds: np.ndarray
    holdout: tuple[tuple[str, int], ...] = ()

    @classmethod
    def fit(cls, train: Split, holdout: Sequence[str] = ()) -> "Captioner":
        """Thresholds from the training split; holdout: 'bright sandal'-style pairs."""
        words = tuple(class_word(n) for n in train.class_labels())
        stats = statistics(train.images, train.max_value)
        thresholds = np.zeros((train.num_classes, len(ATTRIBUTES)), np.float32)
        for k in range(train.num_classes):
            rows = stats[train.labels == k]
            for a in range(len(ATTRIBUTES)):
                thresholds[k, a] = balanced_threshold(rows[:, a])
        return cls(words, thresholds, tuple(parse_pair(p, words) for p in holdout))

    def measure(self, images: np.ndarray, classes: np.ndarray, max_value: float = 1.0
                ) -> np.ndarray:
        """images [N, H, W, C] in [0, max_value], classes int [N] -> int32 [N, 2]: for each
        attribute the index of its value (0: dark / small, 1: bright / large) against the
        class's threshold."""
        stats = statistics(images, max_value)
        return (stats > self.thresholds[np.asarray(classes)]).astype(np.int32)

    def captions(self, images: np.ndarray, classes: np.ndarray, training: bool,
                 max_value: float = 1.0) -> list[tuple[str, ...]]:
        """len(TEMPLATES) captions per image (images in [0, max_value]). training: leave out
        the attribute of a held-out pair (the slots of templates naming it are filled by the
        image's other allowed templates, cycling)."""
        measured = self.measure(images, classes, max_value)
        cache: dict[tuple[int, ...], tuple[str, ...]] = {}
        out = []
        for k, row in zip(np.asarray(classes).tolist(), measured.tolist()):
            key = (k, *row)
            if key not in cache:
                cache[key] = self.phrasings(k, row, training)
            out.append(cache[key])
        return out

    def phrasings(self, k: int, value_index: Sequence[int], training: bool) -> tuple[str, ...]:
        """The captions of an image of class k whose attributes have these value indices."""
        values = {name: words[int(i)] for (name, words), i in zip(ATTRIBUTES.items(),
                                                                  value_index)}
        hidden = {attr for attr, word in values.items()
                  if training and (word, int(k)) in self.holdout}
        allowed = [t for t, names in TEMPLATES if not hidden & set(names)]
        return tuple(fill(allowed[i % len(allowed)], self.class_words[int(k)], values)
                     for i in range(len(TEMPLATES)))

    def prompt_held_out(self, value: str, k: int) -> bool:
        return (value, int(k)) in self.holdout


def fill(template: str, class_name: str, values: dict[str, str]) -> str:
    """A template filled in, with "an" before a vowel ("an ankle boot")."""
    text = template.format(**{"class": class_name, **values})
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def parse_pair(pair: str, class_words: Sequence[str]) -> tuple[str, int]:
    """'bright sandal' -> ('bright', index of 'sandal')."""
    value, _, name = pair.strip().partition(" ")
    known = {v for vs in ATTRIBUTES.values() for v in vs}
    if value not in known or name not in class_words:
        raise CaptionError(f"data.caption_holdout: '{pair}' is not '<attribute value> <class>' "
                           f"(values: {', '.join(sorted(known))}; classes: "
                           f"{', '.join(class_words)})")
    return value, list(class_words).index(name)


def add_captions(splits: dict[str, Split], holdout: Sequence[str], max_tokens: int,
                 tokenizer: str = "words") -> dict[str, Split]:
    """The splits with tokens [N, len(TEMPLATES), max_tokens] and their tokenizer: "words", a
    vocabulary of the training captions (held-out pairs left out of the training split's
    captions only), or a folder of CLIP's BPE files (`text/bpe.py`)."""
    captioner = Captioner.fit(splits["train"], holdout)
    texts = {name: captioner.captions(split.images, split.labels, name == "train",
                                      split.max_value)
             for name, split in splits.items()}
    if tokenizer == "words":
        tokenizer = Tokenizer.build({c for row in set(texts["train"]) for c in row}, max_tokens)
    else:
        tokenizer = ClipTokenizer.read(tokenizer, max_tokens)
    out = {}
    for name, split in splits.items():
        # Few distinct rows (classes x attribute values): encode each once.
        distinct = sorted(set(texts[name]))
        try:
            table = np.stack([tokenizer.encode_all(row) for row in distinct])
        except TokenizerError as e:
            raise CaptionError(f"a caption is too long for data.max_tokens={max_tokens}: "
                               f"{e}") from None
        index = {row: i for i, row in enumerate(distinct)}
        tokens = table[np.asarray([index[row] for row in texts[name]], np.int64)]
        out[name] = dataclasses.replace(split, tokens=tokens, tokenizer=tokenizer)
    return out


def class_prompts(split: Split) -> list[str]:
    """The prompt naming each class alone: ["a t-shirt", "a trouser", ...]."""
    return [fill(TEMPLATES[0][0], class_word(name), {}) for name in split.class_labels()]


def tokenizer_of(split: Split):
    """The tokenizer of a captioned split (a `Tokenizer` or `clip.ClipTokenizer`)."""
    if split.tokens is None:
        raise CaptionError("the data has no captions (data.captions)")
    return split.tokenizer
