"""The train state every family uses, and the contract a family fulfils."""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import flax
import jax
import optax

Metrics = Mapping[str, jax.Array]


@flax.struct.dataclass
class TrainState:
    """One pytree that Orbax saves whole and that is replicated over the mesh.

    A family with several networks (a GAN) keeps dicts of params and optimiser
    states under the same fields.

    step: int32 []; rng: uint32 [2] key data, the root of all randomness of the run;
    ema_params: a copy of params averaged over steps, or None when EMA is off;
    model_state: variables a model updates without gradients (spectral-norm power-iteration
    vectors), or None.
    """
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None
    model_state: Any = None

    def params_for_sampling(self) -> Any:
        return self.params if self.ema_params is None else self.ema_params


class Family(Protocol):
    """A model family: everything the trainer needs, nothing the trainer knows.

    All methods are pure and jit-compatible; `batch` holds "image" [B, H, W, C] in
    `value_range` and "label" int32 [B] (evaluation batches add "mask" [B]).
    """
    value_range: str  # "unit" or "symmetric"

    def init(self, rng: jax.Array, batch: Mapping[str, jax.Array]) -> TrainState: ...

    def train_step(self, state: TrainState, batch: Mapping[str, jax.Array],
                   rng: jax.Array) -> tuple[TrainState, Metrics]: ...

    def eval_step(self, state: TrainState, batch: Mapping[str, jax.Array],
                  rng: jax.Array) -> Metrics:
        """Per-example metrics, each [B]; the trainer takes masked means."""

    def sample(self, state: TrainState, rng: jax.Array, num: int,
               labels: jax.Array | None = None) -> jax.Array:
        """num images [num, H, W, C] in value_range."""


def make_optimizer(train_config, learning_rate: float | None = None
                   ) -> optax.GradientTransformation:
    """Adam(W) with optional global-norm clipping, from `config.train` (its learning_rate unless
    one is given; adam_b1/adam_b2 where the config has them)."""
    parts = []
    if train_config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
    parts.append(optax.adamw(train_config.learning_rate if learning_rate is None else learning_rate,
                             b1=train_config.get("adam_b1", 0.9),
                             b2=train_config.get("adam_b2", 0.999),
                             weight_decay=train_config.weight_decay))
    return optax.chain(*parts)


def apply_gradients(state: TrainState, grads: Any,
                    optimizer: optax.GradientTransformation) -> TrainState:
    """One optimiser step on state.params and state.opt_state."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
