"""The train state every family uses, its optimisers and the EMA of its sampled parameters."""

from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
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


def ema_update(ema_params: Any, params: Any, decay: float | jax.Array) -> Any:
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def ema_decay_at(decay: float, step: jax.Array, warmup: bool) -> float | jax.Array:
    """The EMA's decay after `step` updates (step >= 1). With warm-up, TF's
    ExponentialMovingAverage(num_updates=t) schedule min(decay, (1 + t) / (10 + t)) (diffusers'
    EMAModel runs the same curve one step later and copies the weights at step 1): 0.18 at
    step 1, 0.9 at step 80, 0.999 from step 8,990; so the average forgets the initialisation
    early (at decay 0.999 without it, 37% of the EMA is still the initialisation at step
    1,000)."""
    if not warmup:
        return decay
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


LR_SCHEDULES = ("constant", "cosine", "linear")


def learning_rate_schedule(train_config, peak: float | None = None) -> float | optax.Schedule:
    """The learning rate at each step, from `config.train`: a linear warmup from 0 over
    warmup_steps (Goyal et al. 2017; DDPM warms up over 5,000 steps, Ho et al. 2020), then
    lr_schedule: constant at the peak, cosine decay (Loshchilov & Hutter 2017) or linear
    decay (CycleGAN's) to lr_end_fraction x peak at num_steps, starting at decay_start_step
    (or at the end of the warmup if later). A constant rate without warmup
    stays a float, so the optimiser state is that of runs saved before schedules existed."""
    peak = train_config.learning_rate if peak is None else peak
    kind = train_config.lr_schedule
    warmup = train_config.warmup_steps
    if kind == "constant" and warmup == 0:
        return peak
    end = peak * train_config.lr_end_fraction
    # Decay starts after the warmup, or later at decay_start_step (CycleGAN holds the rate
    # for the first half of training, Zhu et al. 2017, sec. 7).
    decay_start = max(warmup, train_config.decay_start_step)
    decay_steps = max(train_config.num_steps - decay_start, 1)
    decay = {
        "constant": optax.constant_schedule(peak),
        "cosine": optax.cosine_decay_schedule(peak, decay_steps, alpha=end / peak if peak else 0.0),
        "linear": optax.linear_schedule(peak, end, decay_steps),
    }[kind]
    phases, boundaries = [], []
    if warmup:
        phases.append(optax.linear_schedule(0.0, peak, warmup))
        boundaries.append(warmup)
    if decay_start > warmup:
        phases.append(optax.constant_schedule(peak))
        boundaries.append(decay_start)
    if not phases:
        return decay
    return optax.join_schedules(phases + [decay], boundaries)


def make_optimizer(train_config, learning_rate: float | None = None
                   ) -> optax.GradientTransformation:
    """Adam(W) with optional global-norm clipping and the learning-rate schedule of
    `config.train` (peaking at its learning_rate unless one is given; adam_b1/adam_b2 where
    the config has them)."""
    parts = []
    if train_config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
    parts.append(optax.adamw(learning_rate_schedule(train_config, learning_rate),
                             b1=train_config.get("adam_b1", 0.9),
                             b2=train_config.get("adam_b2", 0.999),
                             weight_decay=train_config.weight_decay))
    return optax.chain(*parts)


def apply_gradients(state: TrainState, grads: Any,
                    optimizer: optax.GradientTransformation) -> TrainState:
    """One optimiser step on state.params and state.opt_state."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)


def update_player(optimizers: dict[str, optax.GradientTransformation], name: str, params: dict,
                  opt_state: dict, grads: Any) -> tuple[dict, dict]:
    """(params, opt_state) with the network `name` of a multi-network state ({name: network
    params}, a GAN's players) updated by its own optimiser from grads; the others untouched."""
    updates, new_opt_state = optimizers[name].update(grads, opt_state[name], params[name])
    return ({**params, name: optax.apply_updates(params[name], updates)},
            {**opt_state, name: new_opt_state})
