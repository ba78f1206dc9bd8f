"""The names and layouts of a UNet's parameters in jaxgen (flax) and in diffusers (PyTorch).

jaxgen's `models.unet.UNet` names its modules as flax does (ResBlock_3, Conv_2, ...), in the
order it builds them; diffusers' UNet2DModel names them by place (down_blocks.1.resnets.0).
`module_names` walks the architecture in jaxgen's order and pairs the two; `leaf_pairs` extends
that to every array with its layout change:

    convolution kernel  flax [kh, kw, in, out]  <->  torch weight [out, in, kh, kw]
    dense kernel        flax [in, out]          <->  torch weight [out, in]
    GroupNorm scale     flax scale              <->  torch weight
    embedding           flax embedding [N, D]   <->  torch weight [N, D]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# Submodules of one residual block and one attention block, flax name -> diffusers name.
RES_BLOCK = {"GroupNorm_0": "norm1", "Conv_0": "conv1", "Dense_0": "time_emb_proj",
             "GroupNorm_1": "norm2", "Conv_1": "conv2", "skip": "conv_shortcut"}
ATTENTION = {"GroupNorm_0": "group_norm", "query": "to_q", "key": "to_k", "value": "to_v",
             "out": "to_out.0"}
# Attention projections as diffusers < 0.14 saved them (google/ddpm-cifar10-32 among them);
# diffusers renames them on load, and so does jaxgen.
DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v",
                        "proj_attn": "to_out.0"}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What decides the UNet's module names: levels, blocks per level, where attention is."""
    num_levels: int
    num_res_blocks: int
    attention_levels: tuple[bool, ...]  # one per level
    mid_attention: bool
    conditional: bool


def module_names(arch: Architecture) -> dict[str, str]:
    """flax module path ('ResBlock_4') -> diffusers module prefix ('down_blocks.1.resnets.0'),
    in the order `models.unet.UNet.__call__` creates the modules."""
    # UNet builds Dense(Dense(emb)): Python constructs the outer layer first, so Dense_0 is
    # the second layer of the time embedding.
    names = {"Dense_0": "time_embedding.linear_2", "Dense_1": "time_embedding.linear_1",
             "Conv_0": "conv_in", "GroupNorm_0": "conv_norm_out"}
    if arch.conditional:
        names["label_embedding"] = "class_embedding"
    counters = {"ResBlock": 0, "AttentionBlock": 0, "Conv": 1}

    def add(kind: str, prefix: str) -> None:
        names[f"{kind}_{counters[kind]}"] = prefix
        counters[kind] += 1

    last = arch.num_levels - 1
    for level in range(arch.num_levels):
        for j in range(arch.num_res_blocks):
            add("ResBlock", f"down_blocks.{level}.resnets.{j}")
            if arch.attention_levels[level]:
                add("AttentionBlock", f"down_blocks.{level}.attentions.{j}")
        if level != last:
            add("Conv", f"down_blocks.{level}.downsamplers.0.conv")
    add("ResBlock", "mid_block.resnets.0")
    if arch.mid_attention:
        add("AttentionBlock", "mid_block.attentions.0")
    add("ResBlock", "mid_block.resnets.1")
    for level in reversed(range(arch.num_levels)):
        block = last - level  # diffusers' up_blocks run from the coarsest level
        for j in range(arch.num_res_blocks + 1):
            add("ResBlock", f"up_blocks.{block}.resnets.{j}")
            if arch.attention_levels[level]:
                add("AttentionBlock", f"up_blocks.{block}.attentions.{j}")
        if level != 0:
            add("Conv", f"up_blocks.{block}.upsamplers.0.conv")
    add("Conv", "conv_out")
    return names


@dataclasses.dataclass(frozen=True)
class LeafPair:
    flax_path: tuple[str, ...]  # ('ResBlock_0', 'Conv_0', 'kernel')
    torch_key: str  # 'down_blocks.0.resnets.0.conv1.weight'
    layout: str  # conv | dense | plain

    def to_torch(self, value: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
        if self.layout == "dense":
            return np.ascontiguousarray(value.T)
        return np.asarray(value)

    def to_flax(self, value: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        if self.layout == "dense":
            if value.ndim == 4:  # a 1x1 convolution used as a projection (old checkpoints)
                value = value[:, :, 0, 0]
            return np.ascontiguousarray(value.T)
        return np.asarray(value)

    def torch_shape(self, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.layout == "conv":
            return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
        if self.layout == "dense":
            return (flax_shape[1], flax_shape[0])
        return tuple(flax_shape)


def leaf_pairs(arch: Architecture, flax_params: Any) -> list[LeafPair]:
    """One LeafPair per array of flax_params (the UNet's params tree, or its shapes)."""
    modules = module_names(arch)
    pairs = []
    for path, leaf in flatten(flax_params).items():
        top, *inner, name = path
        if top not in modules:
            raise KeyError(f"no diffusers name for jaxgen module {'/'.join(path)}")
        parts = [modules[top]]
        table = RES_BLOCK if top.startswith("ResBlock") else (
            ATTENTION if top.startswith("AttentionBlock") else {})
        parts += [table[m] for m in inner]
        ndim = len(leaf.shape)
        if name == "kernel":
            layout = "conv" if ndim == 4 else "dense"
            parts.append("weight")
        elif name in ("scale", "embedding"):
            layout = "plain"
            parts.append("weight")
        else:
            layout = "plain"
            parts.append(name)
        pairs.append(LeafPair(path, ".".join(parts), layout))
    return pairs


def flatten(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """A nested dict -> {path tuple: leaf}."""
    if not hasattr(tree, "items"):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, prefix + (str(key),)))
    return out


def unflatten(leaves: dict[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in leaves.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def canonical_key(key: str) -> str:
    """A diffusers key with the deprecated attention names replaced by today's, and the fused
    projection's name kept (see `split_fused`)."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[-2] in DEPRECATED_ATTENTION and "attentions" in parts:
        return ".".join(parts[:-2] + [DEPRECATED_ATTENTION[parts[-2]], parts[-1]])
    return key


def split_fused(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """to_qkv (diffusers' fuse_qkv_projections) -> to_q, to_k, to_v, split on the output
    axis."""
    out = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] == "to_qkv":
            for name, chunk in zip(("to_q", "to_k", "to_v"), np.split(value, 3, axis=0)):
                out[".".join(parts[:-2] + [name, parts[-1]])] = chunk
        else:
            out[key] = value
    return out
