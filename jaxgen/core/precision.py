"""Mixed precision: parameters and optimiser state stay float32; a network runs in the compute
dtype (`train.compute_dtype`: bfloat16 on GPU/TPU) and hands float32 back to the losses.

This is the policy of DeepMind's jmp (Micikevicius et al. 2018 for the float32 master
weights): cast the parameters and the inputs to the compute dtype at the network's edge, and
its outputs back. Gradients flow through the casts, so they arrive in float32. Inside the
networks, GroupNorm reduces in float32 (flax's force_float32_reductions) and attention takes
its softmax in float32; losses, likelihoods and metrics are computed on the float32 outputs.
bfloat16 has float32's exponent range, so no loss scaling is needed (float16 would need it
and is not offered).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

DTYPES = ("float32", "bfloat16")


def cast_floating(tree: Any, dtype) -> Any:
    """Every floating-point array of tree in dtype; integers (labels, timesteps) untouched."""
    def cast(x):
        if isinstance(x, (jax.Array, jnp.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(dtype)
        return x
    return jax.tree.map(cast, tree)


def apply(module: nn.Module, variables: dict, *args, dtype: str = "float32", **kwargs) -> Any:
    """module.apply with variables["params"] and the floating arguments in dtype, and every
    floating output (mutated collections included) in float32. Other collections (spectral
    norm's power-iteration vectors) stay as they are stored."""
    if jnp.dtype(dtype) == jnp.float32:
        return module.apply(variables, *args, **kwargs)
    variables = {**variables, "params": cast_floating(variables["params"], dtype)}
    out = module.apply(variables, *cast_floating(args, dtype), **kwargs)
    return cast_floating(out, jnp.float32)
