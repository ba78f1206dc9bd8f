"""The family contract: what the trainer, the evaluator and the CLIs may ask of a family.

Required of every family (`Family`): `value_range`, `num_classes`, `curve_metrics`,
`ema_keys`, and the pure, jit-compatible `init`, `train_step`, `eval_step`. Everything else
is an optional capability, a runtime-checkable protocol below; callers ask
`isinstance(family, LatentModel)`, never `hasattr(family, "encode")`.

Batches: "image" [B, H, W, C] in `value_range` ("unit" [0, 1] or "symmetric" [-1, 1]),
"label" int32 [B]; evaluation batches add "mask" float32 [B] (0 on padding rows).

`FamilyBase` gives the defaults and the helpers families share (the initial train state,
labels, bits/dim); a family outside jaxgen may subclass it or implement the protocol itself.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import optax

from jaxgen.core import precision, rng as rng_lib
from jaxgen.core.state import TrainState, averaged_params

Batch = Mapping[str, jax.Array]
Metrics = Mapping[str, jax.Array]


@runtime_checkable
class Family(Protocol):
    value_range: str  # "unit" | "symmetric"
    num_classes: int  # classes the networks are conditioned on; 0: unconditional
    curve_metrics: tuple[str, ...]  # training metrics worth a plot (loss_curves.png)
    ema_keys: tuple[str, ...] | None  # top-level params the EMA averages; None: all

    def init(self, rng: jax.Array, batch: Batch) -> TrainState:
        """A new state (step and rng are set by `initial_state`)."""

    def train_step(self, state: TrainState, batch: Batch,
                   rng: jax.Array) -> tuple[TrainState, Metrics]:
        """One update; metrics are scalars."""

    def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> Metrics:
        """Cheap per-example metrics, each [B], logged at every eval step of training; the
        trainer takes masked means."""


@runtime_checkable
class Sampler(Protocol):
    """A family that draws images."""
    sampling_classes: int  # classes samples can be asked for (0: labels are ignored)

    def sample(self, state: TrainState, rng: jax.Array, num: int,
               labels: jax.Array | None = None) -> jax.Array:
        """num images [num, H, W, C] in value_range; labels int32 [num] or None (then a
        conditional sampler cycles through the classes)."""


@runtime_checkable
class LikelihoodModel(Protocol):
    """A family with a likelihood bound worth the cost of `jaxgen.evaluate` (IWAE, the
    diffusion bound): per-example metrics [B] in nats and bits/dim."""

    def likelihood_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> Metrics: ...


@runtime_checkable
class LatentModel(Protocol):
    """An encoder and a decoder: interpolation, attribute arithmetic, reconstruction error."""
    latent_dim: int

    def encode(self, params: Any, images: jax.Array, labels: jax.Array | None = None) -> Any:
        """images [B, H, W, C] -> code [B, L], or (mean [B, L], log-variance [B, L])."""

    def decode(self, params: Any, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        """z [B, L] -> images [B, H, W, C] in value_range."""


@runtime_checkable
class LatentGenerator(Protocol):
    """A prior over z and a map z -> image without an encoder (a GAN)."""

    def latents(self, rng: jax.Array, num: int) -> jax.Array:
        """z [num, L] from the prior."""

    def from_latents(self, state: TrainState, z: jax.Array,
                     labels: jax.Array | None = None) -> jax.Array:
        """images [B, H, W, C] of the sampling parameters."""


@runtime_checkable
class NoisingProcess(Protocol):
    """A forward noising process and a reverse sampler whose path can be shown (diffusion)."""

    def trajectory(self, state: TrainState, rng: jax.Array, num: int, labels=None,
                   keep: int = 0, **sampler_settings) -> tuple[jax.Array, jax.Array]:
        """(x_0 [num, ...], `keep` snapshots [keep, num, ...] from x_T on) in the process's
        space."""

    def forward_strip(self, x0: jax.Array, rng: jax.Array, num_points: int) -> jax.Array:
        """One image [H, W, C] noised at evenly spaced t: [num_points, H, W, C]."""

    def to_images(self, x: jax.Array) -> jax.Array:
        """The process's space -> images in value_range."""


@runtime_checkable
class LazyRegulariser(Protocol):
    """A family whose regularisers run on some steps only, weighted up by their interval
    (lazy regularisation, Karras et al. 2020, sec. 3.1). The trainer compiles one train step
    per set of regularisers due and calls `train_step(state, batch, rng, due=that set)`, so
    each program computes exactly its terms. (One program branching with lax.cond would do
    the same, but XLA:CPU runs convolutions inside a conditional ~50x slower: measured, and
    jax issue 12868.) Metrics must have the same keys in every program."""

    def regularisers_due(self, step: int) -> frozenset[str]:
        """The regularisers of the update from `step` to step + 1."""


@runtime_checkable
class StyleGenerator(Protocol):
    """A style-based generator (StyleGAN): a mapping network z -> w and a synthesis network
    taking one w per style input (style mixing, truncation, path length in W)."""
    num_ws: int  # style inputs of the synthesis network, coarsest first

    def mapping(self, state: TrainState, z: jax.Array,
                labels: jax.Array | None = None) -> jax.Array:
        """z [B, L] -> w [B, w_dim] of the sampling generator, untruncated."""

    def average_w(self, state: TrainState) -> jax.Array:
        """[w_dim]: the running mean of w, the centre of the truncation trick."""

    def synthesis(self, state: TrainState, ws: jax.Array,
                  noise_rng: jax.Array | None = None) -> jax.Array:
        """ws [B, num_ws, w_dim] -> images [B, H, W, C] in value_range; noise_rng None: one
        fixed noise draw."""


@runtime_checkable
class Translator(Protocol):
    """Unpaired image-to-image translation between two domains A and B (CycleGAN): batches
    carry domain B's images as "image_b" beside A's "image"."""

    def translate(self, state: TrainState, images: jax.Array, direction: str) -> jax.Array:
        """images [B, H, W, C] in value_range of domain A (direction "ab") or B ("ba") -> their
        translations into the other domain, by the sampling (EMA) parameters."""


@runtime_checkable
class PromptModel(Protocol):
    """A sampler conditioned on text prompts (text-to-image): `Sampler.sample` takes the
    condition this returns as its labels."""

    def prompt_condition(self, tokens: jax.Array, labels: jax.Array | None = None) -> Any:
        """tokens int32 [B, L] of the run's tokenizer (0: padding) -> a condition."""


@dataclasses.dataclass
class TrainedRun:
    """A trained run read back from its workdir (`jaxgen.engine.restore.load`): its config,
    data splits, family and newest readable TrainState (replicated over the mesh)."""
    config: Any
    splits: Mapping[str, Any]
    family: Any
    state: TrainState


# The kinds of frozen input the engine loads (`jaxgen.engine.restore.FROZEN_LOADERS`):
# "run", a trained jaxgen workdir (handed in as a TrainedRun); "clip_text_encoder", a Hugging
# Face CLIP text encoder folder (a `jaxgen.text.clip.ClipTextEncoder`).
FROZEN_KINDS = ("run", "clip_text_encoder")


@dataclasses.dataclass(frozen=True)
class FrozenInput:
    """Something a family builds on and never trains: its kind (FROZEN_KINDS) and path."""
    kind: str
    path: str


@runtime_checkable
class BuildsOnFrozenInputs(Protocol):
    """A family built on frozen inputs: trained runs (classifier guidance's noisy classifier,
    latent diffusion's autoencoder) or pretrained weights (a CLIP text encoder). Its class names
    them; the engine loads each and hands them to the constructor,
    Factory(config, data, frozen={config key: the loaded input}): a family's constructor reads
    no disk."""

    @classmethod
    def frozen_inputs_needed(cls, config) -> dict[str, FrozenInput]:
        """{config key: FrozenInput} of what a family of `config` builds on (ConfigError for a
        config that names none where it needs one)."""


@runtime_checkable
class RecordsFrozenFiles(Protocol):
    """A family whose frozen pretrained weights are files outside the workdir, recorded there
    by their SHA-256 (`workdir.check_frozen_inputs`)."""

    def frozen_inputs(self) -> dict[str, list[str]]:
        """{config key: files}."""


@runtime_checkable
class Classifier(Protocol):
    """A classifier of images, of noised images x_t at timestep t when time_conditioned
    (p(y | x_t, t), the classifier of classifier guidance)."""
    time_conditioned: bool
    num_labels: int

    def logits(self, params: Any, images: jax.Array, t: jax.Array | None = None,
               train: bool = False, rng: jax.Array | None = None) -> jax.Array:
        """images [B, H, W, C] (and t [B]) -> logits [B, num_labels]."""


class FamilyBase:
    """Defaults of the contract's attributes and the helpers families share."""

    value_range = "unit"
    num_classes = 0
    curve_metrics: tuple[str, ...] = ("loss",)
    ema_keys: tuple[str, ...] | None = None

    @property
    def sampling_classes(self) -> int:
        return self.num_classes

    def frozen_inputs(self) -> dict[str, list[str]]:
        """{config key: files} of pretrained weights read from outside the workdir (recorded
        by their SHA-256 in the workdir; `workdir.check_frozen_inputs`). Optional: a family
        without it reads none."""
        return {}

    def run(self, module, variables: dict, *args, **kwargs):
        """module.apply in the run's compute dtype (`train.compute_dtype`), float32 out; the
        rngs (dropout's) of the run's generator (`train.dropout_prng`)."""
        impl = self.config.train.dropout_prng
        if kwargs.get("rngs") and impl != "threefry":
            kwargs["rngs"] = {name: rng_lib.with_impl(key, impl)
                              for name, key in kwargs["rngs"].items()}
        return precision.apply(module, variables, *args,
                               dtype=self.config.train.compute_dtype, **kwargs)

    def labels(self, batch: Batch) -> jax.Array | None:
        """The batch's labels when the networks are conditioned on them, else None."""
        return batch["label"] if self.num_classes else None

    def cycled_labels(self, num: int, labels: jax.Array | None = None) -> jax.Array | None:
        """labels, or 0, 1, ..., K-1, 0, ... for a conditional sampler given none."""
        if labels is None and self.sampling_classes:
            return jnp.arange(num) % self.sampling_classes
        return labels


def new_state(params: Any, optimizer: optax.GradientTransformation | Mapping[str, Any],
              model_state: Any = None) -> TrainState:
    """A step-0 state; optimizer is one optax transformation, or {name: transformation} for
    a family whose params are {name: network params} (a GAN)."""
    if isinstance(optimizer, Mapping):
        opt_state = {name: opt.init(params[name]) for name, opt in optimizer.items()}
    else:
        opt_state = optimizer.init(params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      rng=jnp.zeros((2,), jnp.uint32), model_state=model_state)


def initial_state(family: Family, root_key_data: jax.Array, batch: Batch,
                  ema: bool) -> TrainState:
    """The run's step-0 state: the family's init under the run's "init" key, the root key
    stored for every later draw, the EMA started at the averaged parameters. Pure."""
    state = family.init(rng_lib.purpose_key(rng_lib.as_key(root_key_data), "init"), batch)
    state = state.replace(step=jnp.zeros((), jnp.int32), rng=root_key_data)
    if ema:
        state = state.replace(ema_params=averaged_params(state.params, family.ema_keys))
    return state


def bits_per_dim(nats: jax.Array, num_dims: int, offset: float = 0.0) -> jax.Array:
    """(nats + offset) / (D log 2): a per-example bound over D dimensions in bits/dim; offset
    is D log(levels) for a density on dequantised pixels (Theis et al. 2016)."""
    return (nats + offset) * (1.0 / (num_dims * math.log(2.0)))


def missing_members(family: Any) -> list[str]:
    """The contract's required members `family` lacks (an empty list for a valid family)."""
    required = ("value_range", "num_classes", "curve_metrics", "ema_keys", "init",
                "train_step", "eval_step")
    return [name for name in required if not hasattr(family, name)]


def example_batch(image_shape: tuple[int, ...], size: int = 1, max_tokens: int = 0,
                  two_domains: bool = False) -> dict[str, jax.Array]:
    """Zeros of a batch's shapes: what init needs to trace parameter shapes (captioned data:
    tokens [size, max_tokens] too; two-domain data: image_b and label_b)."""
    batch = {"image": jnp.zeros((size, *image_shape), jnp.float32),
             "label": jnp.zeros((size,), jnp.int32)}
    if max_tokens:
        batch["tokens"] = jnp.zeros((size, max_tokens), jnp.int32)
    if two_domains:
        batch.update(image_b=batch["image"], label_b=batch["label"])
    return batch


def abstract_state(family: Family, seed: int, batch: Batch, ema: bool, sharding) -> Any:
    """The shapes and dtypes of the run's state, placed by `sharding`: a restore target."""
    shapes = jax.eval_shape(lambda b: initial_state(family, rng_lib.root_key_data(seed), b, ema),
                            batch)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)
