"""A frozen pretrained text encoder: CLIP's text transformer (Radford et al. 2021), the one
Stable Diffusion v1 conditions on; read from local files in Hugging Face's layout, without
PyTorch and without a download. Its tokens are those of CLIP's BPE (`bpe.py`).

The format (what `CLIPTextModel.save_pretrained` writes; a Stable Diffusion pipeline folder
holds it in `text_encoder/`, beside the tokenizer's `tokenizer/`):

    config.json        CLIPTextConfig: vocab_size, hidden_size, intermediate_size,
                       num_hidden_layers, num_attention_heads, max_position_embeddings,
                       hidden_act (quick_gelu | gelu | gelu_new), layer_norm_eps
    model.safetensors  the weights, keys text_model.* (transformers 5 drops the prefix; a
                       CLIPTextModelWithProjection's text_projection is not used)

The encoder's output is its last hidden state after the final layer norm (Stable Diffusion
v1's context). Its self-attention is causal, so a token's embedding never depends on the
padding after it.
"""

from __future__ import annotations

import functools
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.text.bpe import PretrainedTextError, component, read_json

CONFIG, WEIGHTS = "config.json", "model.safetensors"
ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
}


class ClipSelfAttention(nn.Module):
    """Causal multi-head self-attention with biased projections. x [B, L, D] -> [B, L, D]."""
    heads: int

    @nn.compact
    def __call__(self, x):
        b, length, d = x.shape
        split = lambda a: a.reshape(b, length, self.heads, d // self.heads)  # noqa: E731
        q = split(nn.Dense(d, name="q_proj")(x)) * (d // self.heads) ** -0.5
        k, v = split(nn.Dense(d, name="k_proj")(x)), split(nn.Dense(d, name="v_proj")(x))
        logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32)
        causal = jnp.tril(jnp.ones((length, length), bool))
        weights = jax.nn.softmax(jnp.where(causal, logits, jnp.finfo(jnp.float32).min), -1)
        out = jnp.einsum("bnqk,bknd->bqnd", weights.astype(v.dtype), v).reshape(b, length, d)
        return nn.Dense(d, name="out_proj")(out)


class ClipTextTransformer(nn.Module):
    """CLIP ids int [B, L] -> last hidden state [B, L, hidden_size] (Hugging Face's
    CLIPTextTransformer: token + position embeddings, pre-norm layers of causal
    self-attention and an MLP, a final LayerNorm)."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_positions: int
    activation: str = "quick_gelu"
    eps: float = 1e-5

    @nn.compact
    def __call__(self, ids):
        x = nn.Embed(self.vocab_size, self.hidden_size, name="token_embedding")(ids)
        positions = self.param("position_embedding", nn.initializers.normal(0.02),
                               (self.max_positions, self.hidden_size))
        x = x + positions[None, :ids.shape[1]]
        act = ACTIVATIONS[self.activation]
        for i in range(self.num_layers):
            ln = functools.partial(nn.LayerNorm, epsilon=self.eps)
            x = x + ClipSelfAttention(self.num_heads, name=f"layers_{i}_self_attn")(
                ln(name=f"layers_{i}_layer_norm1")(x))
            h = nn.Dense(self.intermediate_size, name=f"layers_{i}_fc1")(
                ln(name=f"layers_{i}_layer_norm2")(x))
            x = x + nn.Dense(self.hidden_size, name=f"layers_{i}_fc2")(act(h))
        return nn.LayerNorm(epsilon=self.eps, name="final_layer_norm")(x)


def _settings(config: dict, where: str) -> dict:
    try:
        act = config.get("hidden_act", "quick_gelu")
        settings = dict(vocab_size=int(config["vocab_size"]),
                        hidden_size=int(config["hidden_size"]),
                        intermediate_size=int(config["intermediate_size"]),
                        num_layers=int(config["num_hidden_layers"]),
                        num_heads=int(config["num_attention_heads"]),
                        max_positions=int(config["max_position_embeddings"]),
                        activation=act, eps=float(config.get("layer_norm_eps", 1e-5)))
    except (KeyError, TypeError, ValueError) as e:
        raise PretrainedTextError(f"{where}/{CONFIG} is not a CLIPTextConfig: {e!r}") from None
    if act not in ACTIVATIONS:
        raise PretrainedTextError(f"{where}/{CONFIG}: hidden_act '{act}' is not one of "
                                  f"{', '.join(ACTIVATIONS)}")
    if settings["hidden_size"] % settings["num_heads"]:
        raise PretrainedTextError(f"{where}/{CONFIG}: {settings['num_heads']} heads do not "
                                  f"divide hidden_size {settings['hidden_size']}")
    return settings


def _flax_key(key: str) -> tuple[str, ...] | None:
    """A Hugging Face tensor name -> its path in ClipTextTransformer's params (None: not a
    parameter the text encoder uses)."""
    name = key.removeprefix("text_model.")
    if name in ("embeddings.position_ids", "text_projection.weight") or key.startswith(
            "text_projection."):
        return None
    if name == "embeddings.token_embedding.weight":
        return ("token_embedding", "embedding")
    if name == "embeddings.position_embedding.weight":
        return ("position_embedding",)
    leaf = {"weight": "kernel", "bias": "bias"}
    m = re.fullmatch(r"final_layer_norm\.(weight|bias)", name)
    if m:
        return ("final_layer_norm", "scale" if m[1] == "weight" else "bias")
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(layer_norm[12])\.(weight|bias)", name)
    if m:
        return (f"layers_{m[1]}_{m[2]}", "scale" if m[3] == "weight" else "bias")
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\."
                     r"(weight|bias)", name)
    if m:
        return (f"layers_{m[1]}_self_attn", m[2], leaf[m[3]])
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", name)
    if m:
        return (f"layers_{m[1]}_{m[2]}", leaf[m[3]])
    return ("?", key)


class ClipTextEncoder:
    """A frozen CLIP text encoder read from folder (or a pipeline's folder/text_encoder):
    encode(tokens) maps jaxgen ids [B, L] (CLIP id + 1, 0 padding) to (embeddings
    [B, L, width], mask bool [B, L]), the interface of `models.transformer.TextEncoder`; its
    parameters are constants, never trained."""

    def __init__(self, folder: str):
        self.folder = component(folder, "text_encoder", CONFIG)
        self.settings = _settings(read_json(os.path.join(self.folder, CONFIG)), self.folder)
        self.module = ClipTextTransformer(**self.settings)
        self.params = self._read_params()
        self.width = self.settings["hidden_size"]
        self.files = [os.path.join(self.folder, name) for name in (CONFIG, WEIGHTS)]

    def _read_params(self) -> dict:
        from safetensors.numpy import load_file  # imported here: only this path reads weights

        file = os.path.join(self.folder, WEIGHTS)
        if not os.path.isfile(file):
            raise PretrainedTextError(f"{self.folder} has no {WEIGHTS} (jaxgen reads "
                                      f"safetensors only, never a PyTorch pickle)")
        try:
            tensors = load_file(file)
        except Exception as e:  # safetensors raises its own error types
            raise PretrainedTextError(f"cannot read {file}: {e}") from None
        shapes = jax.eval_shape(self.module.init, jax.random.key(0),
                                jnp.zeros((1, 1), jnp.int32))["params"]
        expected = {path: leaf for path, leaf in _flat(shapes)}
        params: dict = {}
        for key, value in sorted(tensors.items()):
            path = _flax_key(key)
            if path is None:
                continue
            if path not in expected:
                raise PretrainedTextError(f"{file}: tensor '{key}' has no place in a CLIP text "
                                          f"transformer of {self.settings['num_layers']} layers")
            value = np.asarray(value, np.float32)
            if path[-1] == "kernel":
                value = value.T  # torch Linear weights are [out, in]
            if value.shape != expected[path].shape:
                raise PretrainedTextError(f"{file}: tensor '{key}' has {value.size} values in "
                                          f"shape {tensors[key].shape}; {CONFIG} implies "
                                          f"{expected[path].size}")
            _put(params, path, jnp.asarray(value))
        missing = sorted("/".join(p) for p in expected if _get(params, p) is None)
        if missing:
            raise PretrainedTextError(f"{file} lacks {len(missing)} tensors of the CLIP text "
                                      f"transformer, e.g. {missing[0]}")
        return params

    def encode(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
        """tokens int32 [B, L] (jaxgen ids) -> (embeddings [B, L, width], mask [B, L]), held
        out of the gradient."""
        if tokens.shape[1] > self.settings["max_positions"]:
            raise PretrainedTextError(f"data.max_tokens={tokens.shape[1]} exceeds the text "
                                      f"encoder's {self.settings['max_positions']} positions")
        mask = tokens != 0
        ids = jnp.maximum(tokens - 1, 0)  # padding reads token 0; causal attention hides it
        hidden = self.module.apply({"params": self.params}, ids)
        return jax.lax.stop_gradient(hidden), mask


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _put(tree: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree
