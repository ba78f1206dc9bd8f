"""The declared config keys: `Key` (default, meaning, check) and the keys every experiment has.

A family declares its own keys the same way (`Family.keys`); `python -m jaxgen.keys` writes the
tables of docs/keys.md from these declarations, and `jaxgen.core.config` validates against them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on one value, with the words that say it."""
    test: Callable[[Any], bool]
    text: str


POSITIVE = Check(lambda v: v > 0, "must be positive")
NON_NEGATIVE = Check(lambda v: v >= 0, "must be >= 0")
FRACTION = Check(lambda v: 0.0 <= v < 1.0, "must be in [0, 1)")
POSITIVE_ENTRIES = Check(lambda v: len(v) > 0 and all(x > 0 for x in v),
                         "must be a non-empty tuple of positive numbers")


_UNSET = object()


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key as a family declares it: the single source of its default, its
    validation and its line in the docs (`python -m jaxgen.keys`). `saved_before`: the value
    a config saved before the key existed implies, when that is not the default (a floor
    whose default changed, say); a workdir's config gets it, so old runs compute as they did."""
    default: Any
    help: str
    choices: tuple = ()
    check: Check | None = None
    saved_before: Any = _UNSET

    @property
    def implied(self) -> Any:
        return self.default if self.saved_before is _UNSET else self.saved_before


Keys = Mapping[str, Key]  # "section.name" -> Key

# Where one dataset's images come from: the keys of `data.` and of each domain of two-domain
# data (`data.domain_a.`, `data.domain_b.`, CycleGAN).
SOURCES = ("digits", "tfds", "idx", "folder", "synthetic")
TRANSFORMS = ("none", "invert", "flip_vertical", "flip_horizontal", "rotate90", "flip_invert")
ON_BAD_FILE = ("error", "skip")
SOURCE_KEYS: dict[str, Key] = {
    "source": Key("digits", "where images come from; folder: a directory of PNG/JPEG files; "
                            "synthetic: random pixels for benchmarks and smoke tests",
                  choices=SOURCES),
    "name": Key("", "tfds name, e.g. fashion_mnist"),
    "data_dir": Key("", "tfds data_dir, the folder of IDX files for source=idx, or the "
                        "image folder of source=folder"),
    "tfds_splits": Key(("train", "test"), "source=tfds: the splits read as train and test, "
                                          "e.g. ('trainA', 'testA') for a domain of "
                                          "cycle_gan/horse2zebra",
                       check=Check(lambda v: len(v) == 2 and all(isinstance(x, str) and x
                                                                 for x in v),
                                   "must be two split names")),
    "image_size": Key(0, "resize the shorter side to this (antialiased bicubic) and "
                         "centre-crop a square (0: keep sizes, which must then agree)",
                      check=NON_NEGATIVE),
    "channels": Key(3, "source=folder: 3 (RGB) or 1 (grayscale)", choices=(1, 3)),
    "on_bad_file": Key("error", "source=folder: an unreadable image stops with its name, or "
                                "is skipped and counted", choices=ON_BAD_FILE),
    "test_fraction": Key(0.1, "source=folder without train/ and test/ subfolders: the share "
                              "of images held out for testing (a fixed seeded split)",
                         check=Check(lambda v: 0.0 < v < 1.0, "must be in (0, 1)")),
    "synthetic_shape": Key((32, 32, 3), "[H, W, C] of source=synthetic", check=POSITIVE_ENTRIES),
    "synthetic_size": Key(1024, "training images of source=synthetic (tests: a tenth)",
                          check=POSITIVE),
    "synthetic_classes": Key(10, "classes of source=synthetic", check=POSITIVE),
    "classes": Key((), "keep only these class ids, e.g. (7,) for Fashion-MNIST's sneakers "
                       "(labels keep their ids); (): every class",
                   check=Check(lambda v: all(type(c) is int and c >= 0 for c in v),
                               "must be a tuple of class ids >= 0")),
    "part": Key((0, 1), "(k, n): part k of n disjoint parts of each split (a fixed seeded "
                        "partition): one dataset's images shared out between two domains",
                check=Check(lambda v: len(v) == 2 and 0 <= v[0] < v[1], "must be (k, n) with "
                                                                        "0 <= k < n")),
    "transform": Key("none", "a fixed transform of every image: a domain whose true "
                             "translation is known", choices=TRANSFORMS),
    "pad_to": Key(0, "pad images with zeros (the background of MNIST-likes) to "
                     "pad_to x pad_to, centred, e.g. 28 -> 32 for StyleGAN; 0: as they are",
                  check=NON_NEGATIVE),
}


def source_keys(prefix: str, **defaults: Any) -> dict[str, Key]:
    """SOURCE_KEYS under `prefix` ("data." or "data.domain_a."), with other defaults."""
    return {prefix + name: dataclasses.replace(key, default=defaults[name])
            if name in defaults else key for name, key in SOURCE_KEYS.items()}


# Key groups that several families share, each declared once here; a family takes a group at
# its own defaults (`config.with_defaults(GROUP, **{key: default})`).

# Two players, each with its own rate, sharing Adam's betas (GANs, StyleGAN2, CycleGAN).
ADVERSARIAL_OPTIMIZER_KEYS: dict[str, Key] = {
    "train.learning_rate": Key(2e-4, "the generator's learning rate (CycleGAN: both "
                                     "generators')", check=NON_NEGATIVE),
    "train.discriminator_learning_rate": Key(2e-4, "the discriminator's learning rate "
                                                   "(CycleGAN: both discriminators')",
                                             check=NON_NEGATIVE),
    "train.adam_b1": Key(0.5, "Adam beta1 of both players"),
    "train.adam_b2": Key(0.999, "Adam beta2 of both players"),
}

# The R1 penalty on the discriminator's gradient at real data (Mescheder et al. 2018).
R1_KEYS: dict[str, Key] = {
    "model.r1_gamma": Key(0.0, "R1 penalty gamma/2 E||grad_x D(x)||^2 on real data (0: off)",
                          check=NON_NEGATIVE),
    "model.r1_interval": Key(1, "lazy regularisation (Karras et al. 2020, sec. 3.1): R1 on one "
                                "step in r1_interval, weighted by r1_interval", check=POSITIVE),
}

BASE_KEYS: dict[str, Key] = {
    "family": Key("", "a registered family (python -m jaxgen.keys lists them) or "
                      "\"package.module:Factory\""),
    "seed": Key(0, "the root of every random draw of the run",
                check=Check(lambda v: isinstance(v, int) and 0 <= v < 2**31,
                            "must be an integer in [0, 2^31)")),
    **source_keys("data."),
    "data.source": dataclasses.replace(
        SOURCE_KEYS["source"], choices=SOURCES + ("domains",),
        help=SOURCE_KEYS["source"].help + "; domains: two unpaired domains, data.domain_a "
                                          "and data.domain_b (CycleGAN)"),
    "data.binarize": Key(False, "dynamic binarisation: a fresh Bernoulli draw per step"),
    "data.dequantize": Key(False, "uniform dequantisation (Theis et al. 2016)"),
    "train.num_steps": Key(1000, "training steps", check=POSITIVE),
    "train.batch_size": Key(128, "global batch, over all devices of all hosts", check=POSITIVE),
    "train.learning_rate": Key(1e-3, "Adam's learning rate", check=NON_NEGATIVE),
    "train.lr_schedule": Key("constant", "after the warmup: constant, cosine or linear decay "
                                         "to lr_end_fraction x learning_rate at num_steps",
                             choices=("constant", "cosine", "linear")),
    "train.warmup_steps": Key(0, "steps of linear warmup from 0 to learning_rate",
                              check=NON_NEGATIVE),
    "train.decay_start_step": Key(0, "the decayed schedules hold learning_rate until this step "
                                     "(CycleGAN: half of num_steps), then decay",
                                  check=NON_NEGATIVE),
    "train.lr_end_fraction": Key(0.0, "the decayed schedules' final rate, as a fraction of "
                                      "learning_rate", check=NON_NEGATIVE),
    "train.weight_decay": Key(0.0, "AdamW weight decay", check=NON_NEGATIVE),
    "train.grad_clip_norm": Key(0.0, "global-norm clipping (0: off)", check=NON_NEGATIVE),
    "train.ema_decay": Key(0.0, "EMA of the sampled parameters (0: off)", check=FRACTION),
    "train.ema_warmup": Key(False, "EMA decay min(ema_decay, (1+t)/(10+t)) after step t "
                                   "(TF's ExponentialMovingAverage with num_updates; "
                                   "diffusers' EMAModel one step later): the average "
                                   "forgets the initialisation within its first steps"),
    "train.compute_dtype": Key("float32", "dtype of the networks' activations, matmuls and "
                                          "convolutions; parameters, optimiser, losses stay "
                                          "float32 (bfloat16 on GPU/TPU)",
                               choices=("float32", "bfloat16")),
    "train.dropout_prng": Key("threefry", "generator of the networks' dropout masks: "
                                          "threefry (the same bits on every backend and "
                                          "device count) or rbg (XLA's RngBitGenerator: "
                                          "cheaper masks on GPU/TPU; its bits depend on "
                                          "the backend and the partitioning)",
                              choices=("threefry", "rbg")),
    "train.deterministic": Key(True, "bit-reproducible GPU runs (--xla_gpu_deterministic_ops, "
                                     "set before the backend starts); CPU and TPU are "
                                     "deterministic anyway"),
    "train.profile_steps": Key(0, "> 0: a jax.profiler trace of this many steps (after a "
                                  "few warm-up steps) in DIR/profile, for TensorBoard or "
                                  "Perfetto", check=NON_NEGATIVE),
    "train.log_every_steps": Key(50, "steps between logged training metrics", check=POSITIVE),
    "eval.every_steps": Key(500, "steps between test evaluations (0: none during training)",
                            check=NON_NEGATIVE),
    "eval.batch_size": Key(256, "global batch of test evaluations (padded to the devices)",
                           check=POSITIVE),
    "eval.num_examples": Key(0, "test examples evaluated (0: the whole test split)",
                             check=NON_NEGATIVE),
    "eval.num_samples": Key(10000, "samples of jaxgen.evaluate's FID, KID, precision/recall, "
                                   "coverage (0: likelihood metrics only)", check=NON_NEGATIVE),
    "eval.sample_batch_size": Key(500, "global batch of sampling for the metrics (padded to "
                                       "the devices)", check=POSITIVE),
    "eval.extractor": Key("classifier", "features of the FID family of metrics",
                          choices=("classifier", "inception")),
    "eval.inception_weights": Key("", "local .npz of Inception-v3 weights; never downloaded"),
    "eval.extractor_steps": Key(3000, "training steps of the dataset's classifier",
                                check=POSITIVE),
    "eval.extractor_dir": Key("", "cache of trained classifiers (\"\": "
                                  "$JAXGEN_CACHE/extractors)"),
    "eval.pr_k": Key(3, "k of the k-NN manifolds of precision/recall", check=POSITIVE),
    "eval.kid_subsets": Key(100, "random subsets of KID's mean and standard deviation "
                                 "(torch-fidelity's convention)", check=POSITIVE),
    "eval.kid_subset_size": Key(1000, "samples per KID subset (at most the smaller set)",
                                check=Check(lambda v: v >= 2, "must be >= 2")),
    "eval.coverage_threshold": Key(0.1, "a class is covered when its share >= threshold x "
                                        "the data's share"),
    "eval.track_samples": Key(0, "samples whose metrics are logged at every eval step of "
                                 "training, the same z each time (0: off)",
                              check=NON_NEGATIVE),
    "sample.every_steps": Key(500, "steps between sample grids (0: none during training)",
                              check=NON_NEGATIVE),
    "sample.num": Key(64, "images in a sample grid", check=POSITIVE),
    "checkpoint.every_steps": Key(500, "steps between checkpoints", check=POSITIVE),
    "checkpoint.keep": Key(3, "checkpoints kept", check=POSITIVE),
}
