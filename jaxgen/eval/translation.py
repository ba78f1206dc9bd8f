"""Metrics of unpaired image-to-image translation (CycleGAN) on the test splits.

Per direction d, "ab" (A -> B) and "ba", over up to `num` test images x of the source domain
(the target domain Y's evaluation classifier scoring the translations):

  fid_d, kid_d              translations G(x) against Y's test images, Y's classifier features
  real_fid_d, real_kid_d    the floor: as many of Y's *training* images against the same test
                            images, what a perfect translator would reach
  cycle_mse_d               mean (G'(G(x)) - x)^2 per pixel in [0, 1], G' the other generator
  mse_to_truth_d            a known relation (Y = T(X)): mean (G(x) - T(x))^2 per pixel, beside
  identity_mse_to_truth_d   the identity map's mean (x - T(x))^2: the floor to beat
  class_agreement_d         X and Y share classes: share of G(x) classified as x's class
  target_accuracy_d         Y is some classes of a dataset: share of G(x) classified into them

The runner receives the translation as a function on host images and knows nothing of
families or trainers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from jaxgen.data.sources import Split
from jaxgen.eval import metrics
from jaxgen.eval.extractor import Extractor
from jaxgen.core.progress import Progress

# (images [N, H, W, C] in [0, 1], direction "ab" or "ba") -> translations, same shape.
Translate = Callable[[np.ndarray, str], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Relation:
    """What is known of how the two domains relate.
    truth: (images in [0, 1], direction) -> the true translations, where B = T(A) is known;
    shared_classes: the domains' labels name the same classes (class agreement applies);
    target_classes: {"a": classes of A, "b": classes of B}; () where a domain has all."""
    truth: Callable[[np.ndarray, str], np.ndarray] | None = None
    shared_classes: bool = False
    target_classes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def unit(split: Split, count: int) -> np.ndarray:
    return split.images[:count].astype(np.float32) / split.max_value


def direction_metrics(translate: Translate, direction: str, source: Split, target: Split,
                      target_train: Split, extractors: dict[str, Extractor], relation: Relation,
                      num: int, batch_size: int, eval_config, seed: int) -> dict[str, float]:
    """The metrics of one direction (see the module's doc), suffixed by `direction`."""
    reverse = direction[::-1]
    count = min(num, len(source))
    x = unit(source, count)
    sums = {"cycle": 0.0, "truth": 0.0, "identity": 0.0}
    features, predicted = [], []
    progress = Progress(f"translating {count} test images {direction[0].upper()} -> "
                        f"{direction[1].upper()}", -(-count // batch_size))
    for start in range(0, count, batch_size):
        batch = x[start:start + batch_size]
        translated = translate(batch, direction)
        sums["cycle"] += float(np.sum(np.square(translate(translated, reverse) - batch)))
        if relation.truth is not None:
            truth = relation.truth(batch, direction)
            sums["truth"] += float(np.sum(np.square(translated - truth)))
            sums["identity"] += float(np.sum(np.square(batch - truth)))
        out = extractors["classes"].apply(translated)
        predicted.append(np.asarray(out["label"]))
        features.append(np.asarray(extractors["features"].apply(translated)["features"]))
        progress.update(start // batch_size + 1)
    pixels = x.size
    values = {f"cycle_mse_{direction}": sums["cycle"] / pixels}
    if relation.truth is not None:
        values[f"mse_to_truth_{direction}"] = sums["truth"] / pixels
        values[f"identity_mse_to_truth_{direction}"] = sums["identity"] / pixels
    predicted = np.concatenate(predicted)
    if relation.shared_classes:
        values[f"class_agreement_{direction}"] = float(np.mean(predicted == source.labels[:count]))
    wanted = relation.target_classes.get(direction[1], ())
    if wanted:
        values[f"target_accuracy_{direction}"] = float(np.mean(np.isin(predicted, wanted)))
    reference = real_features(target, extractors["features"], batch_size, num)
    compared = {"": np.concatenate(features),
                "real_": real_features(target_train, extractors["features"], batch_size, count)}
    for prefix, generated in compared.items():
        values[f"{prefix}fid_{direction}"] = metrics.fid(generated, reference)
        values[f"{prefix}kid_{direction}"], _ = metrics.kid(
            generated, reference, eval_config.kid_subsets, eval_config.kid_subset_size, seed)
    return values


def real_features(split: Split, extractor: Extractor, batch_size: int, num: int) -> np.ndarray:
    """Features [N, D] of up to `num` of split's images (in order)."""
    x = unit(split, min(num, len(split)))
    return np.concatenate([np.asarray(extractor.apply(x[s:s + batch_size])["features"])
                           for s in range(0, len(x), batch_size)])


def translation_metrics(translate: Translate, splits: dict[str, Split],
                        extractors: dict[str, dict[str, Extractor]], relation: Relation,
                        num: int, batch_size: int, eval_config, seed: int) -> dict[str, float]:
    """Both directions' metrics; splits: {"train", "test"} of domain A, each with domain B's
    attached; extractors: {"a": {"classes", "features"}, "b": ...}, each domain's."""
    train, test = splits["train"], splits["test"]
    values = direction_metrics(translate, "ab", test, test.domain_b, train.domain_b,
                               extractors["b"], relation, num, batch_size, eval_config, seed)
    values.update(direction_metrics(translate, "ba", test.domain_b, test, train,
                                    extractors["a"], relation, num, batch_size, eval_config,
                                    seed))
    return values
