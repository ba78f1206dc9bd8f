"""FLOPs of a function counted from its jaxpr, and the dense peaks of accelerators, for MFU.

XLA's `cost_analysis()` is no use for this on GPU: the convolutions become cuDNN custom calls,
whose FLOPs it leaves out (it reported 6.4 TFLOP/s for a step that did 132). Counting from the
jaxpr sees every convolution and matmul, forward and backward, before the backend picks
kernels. Only convolutions and dot products (matmuls, einsums, attention) are counted, each
multiply-add as 2 FLOPs, as MFU conventionally does (Chowdhery et al. 2022, appendix B);
elementwise work, normalisation and reductions are left out.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.extend import core


def _dot_general_flops(eqn) -> int:
    """2 x output elements x the contracted size."""
    (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contracting)


def _conv_flops(eqn) -> int:
    """2 x output elements x (kernel window x kernel input features) / input dilation: each
    output element is one dot product over the kernel's window and input features (grouped
    or not), of which a dilated input (the input gradient of a strided convolution, a
    transposed convolution) has only 1 / prod(lhs_dilation) of the taps on real values."""
    rhs = eqn.invars[1].aval.shape
    spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, *spatial)
    window = math.prod(rhs[d] for d in spec[2:])
    out = eqn.outvars[0].aval.shape
    dilation = math.prod(eqn.params["lhs_dilation"])
    return 2 * math.prod(out) * window * rhs[spec[1]] // dilation


def _sub_jaxprs(value: Any) -> list:
    if isinstance(value, core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def count_jaxpr(jaxpr: core.Jaxpr) -> dict[str, int]:
    """{"conv": FLOPs, "dot": FLOPs, "unbounded_loops": while loops whose bodies were counted
    once} of a jaxpr, through every nested jaxpr: scan bodies times their length, the
    costliest branch of a cond."""
    totals = {"conv": 0, "dot": 0, "unbounded_loops": 0}

    def add(counts, times=1):
        for k in totals:
            totals[k] += counts[k] * (times if k != "unbounded_loops" else 1)

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            totals["dot"] += _dot_general_flops(eqn)
        elif name == "conv_general_dilated":
            totals["conv"] += _conv_flops(eqn)
        elif name == "cond":
            branches = [count_jaxpr(j) for j in _sub_jaxprs(eqn.params["branches"])]
            add(max(branches, key=lambda c: c["conv"] + c["dot"]))
        elif name == "scan":
            add(count_jaxpr(eqn.params["jaxpr"].jaxpr), eqn.params["length"])
        else:
            if name == "while":
                totals["unbounded_loops"] += 1
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    add(count_jaxpr(sub))
    return totals


def count(fn: Callable, *args, **kwargs) -> dict[str, int]:
    """count_jaxpr of fn(*args, **kwargs) (arrays or ShapeDtypeStructs), plus "total"."""
    counts = count_jaxpr(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
    counts["total"] = counts["conv"] + counts["dot"]
    return counts


# Dense peak FLOP/s per chip by compute dtype, from the vendors' data sheets (no sparsity).
# float32 on NVIDIA tensor cores is TF32, which XLA uses for float32 matmuls and convolutions
# at its default precision; on TPU the default precision runs float32 matmuls as bfloat16
# passes, so its float32 peak is not a number a step can be held to (None).
PEAKS: dict[str, dict[str, float | None]] = {
    "H100 SXM": {"bfloat16": 989e12, "float32": 495e12},
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "TPU v4": {"bfloat16": 275e12, "float32": None},
    "TPU v5e": {"bfloat16": 197e12, "float32": None},
    "TPU v5p": {"bfloat16": 459e12, "float32": None},
    "TPU v6e": {"bfloat16": 918e12, "float32": None},
}


def chip_name(device_kind: str) -> str | None:
    """The PEAKS entry of a jax device_kind ("NVIDIA H100 80GB HBM3", "TPU v5 lite"...)."""
    kind = device_kind.lower()
    if "h200" in kind:
        return "H200"
    if "h100" in kind:
        return "H100 PCIe" if "pcie" in kind else "H100 SXM"
    if "a100" in kind:
        return "A100"
    for tpu, names in (("TPU v4", ("tpu v4",)), ("TPU v5e", ("tpu v5 lite", "tpu v5e")),
                       ("TPU v5p", ("tpu v5p", "tpu v5")), ("TPU v6e", ("tpu v6 lite",
                                                                        "tpu v6e"))):
        if any(kind.startswith(n) for n in names):
            return tpu
    return None


def peak_flops(device: Any, dtype: str) -> float | None:
    """The dense peak FLOP/s of one device for a compute dtype; None where unknown (CPUs)."""
    chip = chip_name(getattr(device, "device_kind", ""))
    return None if chip is None else PEAKS[chip].get(jnp.dtype(dtype).name)
