"""The train state every family uses, its optimisers and the EMA of its sampled parameters."""

from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """One pytree that Orbax saves whole and that is replicated over the mesh.

    A family with several networks (a GAN) keeps dicts of params and optimiser
    states under the same fields.

    step: int32 []; rng: uint32 [2] key data, the root of all randomness of the run;
    ema_params: an average over steps of the parameters the family samples with (all of
    params, or the top-level entries its `ema_keys` names), or None when EMA is off;
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
        """params with the averaged entries in place of the current ones."""
        if self.ema_params is None:
            return self.params
        if isinstance(self.params, Mapping) and set(self.ema_params) != set(self.params):
            return {**self.params, **self.ema_params}
        return self.ema_params


def averaged_params(params: Any, ema_keys: tuple[str, ...] | None) -> Any:
    """The part of params an EMA covers: all of it (ema_keys None) or the named entries."""
    return params if ema_keys is None else {k: params[k] for k in ema_keys}


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


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
