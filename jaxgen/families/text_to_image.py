"""Text-to-image diffusion: the denoiser reads a prompt through cross-attention (Rombach et al.
2022, sec. 3.3), in pixel space (`text_diffusion`) or on an autoencoder's codes
(`text_latent_diffusion`, Stable Diffusion's arrangement).

A small transformer encodes the prompt's tokens (`models.transformer.TextEncoder`, trained with
the denoiser); spatial transformer blocks at model.transformer_resolutions attend from the
image positions to the token embeddings, padding masked out. Classifier-free guidance (Ho &
Salimans 2022): during training a caption is replaced by the empty prompt (the start token
alone) with probability model.prompt_dropout, so one network learns the unconditional model;
sampling mixes the two with sample.guidance_scale.

The data must be captioned (`data.captions`, `jaxgen/data/captions.py`); batches carry tokens
[B, L]. A class label asks for the prompt "a CLASS" (so the evaluator's conditional accuracy is
the class prompts' accuracy); a class-conditional network (model.conditional) gets the label as
well.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxgen.core import config as config_lib
from jaxgen.core.config import ConfigError
from jaxgen.core.config_keys import FRACTION, NON_NEGATIVE, POSITIVE, Key
from jaxgen.core.contract import FrozenInput
from jaxgen.data.sources import DataSpec
from jaxgen.families import diffusion, latent_diffusion
from jaxgen.models.transformer import TextEncoder
from jaxgen.models.unet import TextConditionedUNet, UNet
from jaxgen.text.clip import ClipTextEncoder

TEXT_KEYS = {
    "data.captions": Key("attributes", "captions of each image: 'attributes' (the class name and "
                                       "brightness and size measured on the pixels; "
                                       "data/captions.py)", choices=("attributes",)),
    "data.caption_holdout": Key((), "'<value> <class>' pairs no training caption names (e.g. "
                                    "'bright sandal'): prompts that test composition"),
    "data.max_tokens": Key(12, "tokens of a prompt, its start token (and CLIP's end token) "
                                "included", check=POSITIVE),
    "data.tokenizer": Key("words", "'words' (a vocabulary built from the training captions) or "
                                   "a folder with CLIP's BPE files (vocab.json, merges.txt; a "
                                   "Stable Diffusion pipeline's tokenizer/); text/bpe.py"),
    "model.text_encoder": Key("", "'' trains jaxgen's text encoder with the denoiser; a folder "
                                  "with a CLIP text encoder (config.json, model.safetensors; a "
                                  "Stable Diffusion pipeline's text_encoder/) is read and kept "
                                  "frozen (needs data.tokenizer=its BPE files); text/clip.py"),
    "model.text_width": Key(64, "width of the text encoder's token embeddings", check=POSITIVE),
    "model.text_depth": Key(2, "transformer layers of the text encoder", check=POSITIVE),
    "model.text_heads": Key(4, "attention heads of the text encoder", check=POSITIVE),
    "model.transformer_resolutions": Key((7,), "side lengths with a spatial transformer "
                                               "(self-attention, cross-attention to the "
                                               "prompt, feed-forward)"),
    "model.pooled_text": Key(True, "add the prompt's mean token embedding to the timestep "
                                   "embedding too (Imagen's pooled embedding)"),
    "model.transformer_heads": Key(4, "attention heads of the spatial transformers",
                                   check=POSITIVE),
    "model.transformer_depth": Key(1, "transformer layers per spatial transformer",
                                   check=POSITIVE),
    "eval.prompt_samples": Key(25, "samples per prompt of jaxgen.evaluate's prompt-following "
                                   "suite ('a {value} {class}' for every class and attribute "
                                   "value; 0: off)", check=NON_NEGATIVE),
    "model.prompt_dropout": Key(0.1, "probability that a training caption is replaced by the "
                                     "empty prompt (classifier-free guidance)", check=FRACTION),
}

KEYS = {**diffusion.KEYS, **TEXT_KEYS}
LATENT_KEYS = {**latent_diffusion.KEYS,
               **config_lib.with_defaults(TEXT_KEYS, **{"model.transformer_resolutions": (1,)})}


def default_config():
    return config_lib.from_keys("text_diffusion", KEYS)


def latent_default_config():
    return config_lib.from_keys("text_latent_diffusion", LATENT_KEYS)


class TextConditioning:
    """Prompt conditioning for a diffusion family (mixed in before it): the condition is
    {"tokens": int32 [B, L]} (plus "label" [B] for a class-conditional network)."""

    guidance_training = "model.prompt_dropout > 0"

    @classmethod
    def frozen_inputs_needed(cls, config) -> dict[str, FrozenInput]:
        """A pretrained CLIP text encoder (model.text_encoder), and what the diffusion family
        builds on."""
        if config.sample.classifier_scale:
            raise ConfigError("sample.classifier_scale: classifier guidance is for class "
                              "labels; prompts use classifier-free guidance "
                              "(sample.guidance_scale)")
        text = config.model.text_encoder
        return {**({"model.text_encoder": FrozenInput("clip_text_encoder", text)} if text else {}),
                **super().frozen_inputs_needed(config)}

    def __init__(self, config, data: DataSpec, frozen: Mapping[str, Any] | None = None):
        config_lib.check_keys(config, self.keys)
        if not data.vocab_size:
            raise ConfigError(f"family '{config.family}' needs captioned data (data.captions)")
        if config.model.text_width % config.model.text_heads:
            raise ConfigError(f"model.text_heads={config.model.text_heads} does not divide "
                              f"model.text_width={config.model.text_width}")
        self.prompt_dropout = config.model.prompt_dropout
        self.class_prompts = jnp.asarray(data.class_prompts, jnp.int32)  # [classes, L]
        self.empty_tokens = jnp.asarray(data.empty_prompt, jnp.int32)  # [L]
        self.frozen_text = None
        if config.model.text_encoder:
            self.frozen_text = self._checked_text_encoder(
                frozen["model.text_encoder"], config, data)
        super().__init__(config, data, frozen)

    @staticmethod
    def _checked_text_encoder(encoder: ClipTextEncoder, config, data: DataSpec):
        """The frozen CLIP text encoder of model.text_encoder, checked against the data's
        tokens."""
        if config.data.tokenizer == "words":
            raise ConfigError(f"model.text_encoder reads CLIP's BPE tokens: set data.tokenizer "
                              f"to its tokenizer folder (e.g. data.tokenizer="
                              f"{config.model.text_encoder})")
        if data.vocab_size != encoder.settings["vocab_size"] + 1:
            raise ConfigError(f"data.tokenizer has {data.vocab_size - 1} tokens, "
                              f"model.text_encoder embeds {encoder.settings['vocab_size']}: "
                              f"not a matching pair")
        if data.max_tokens > encoder.settings["max_positions"]:
            raise ConfigError(f"data.max_tokens={data.max_tokens} exceeds model.text_encoder's "
                              f"{encoder.settings['max_positions']} positions")
        return encoder

    def trained_for_guidance(self, config) -> bool:
        return config.model.prompt_dropout > 0

    def frozen_inputs(self) -> dict[str, list[str]]:
        if self.frozen_text is None:
            return {}
        return {"model.text_encoder": self.frozen_text.files}

    def network(self, unet: UNet):
        m = self.config.model
        return TextConditionedUNet(
            unet.clone(transformer_resolutions=tuple(m.transformer_resolutions),
                       transformer_heads=m.transformer_heads,
                       transformer_depth=m.transformer_depth),
            None if self.frozen_text else TextEncoder(
                self.data.vocab_size, self.data.max_tokens, m.text_width, m.text_depth,
                m.text_heads), m.pooled_text)

    def network_condition(self, condition):
        """condition with "context": (embeddings, mask) of its tokens where the text encoder
        is frozen (computed outside the trained network); unchanged otherwise."""
        if self.frozen_text is None:
            return condition
        return {**condition, "context": self.frozen_text.encode(condition["tokens"])}

    def empty_prompt(self, tokens: jax.Array) -> jax.Array:
        """The empty prompt shaped as tokens [B, L]."""
        return jnp.broadcast_to(self.empty_tokens, tokens.shape)

    @property
    def sampling_classes(self) -> int:
        """Classes asked for by their prompt "a CLASS"."""
        return self.data.num_classes

    def labels(self, batch):
        """The batch's condition: {"tokens": [B, L]} (+ "label" [B])."""
        condition = {"tokens": batch["tokens"]}
        if self.num_classes:
            condition["label"] = batch["label"]
        return condition

    def prompt_condition(self, tokens, labels=None):
        """The condition of prompts' tokens [B, L] (and labels [B], a class-conditional
        network's; default the null label)."""
        condition = {"tokens": jnp.asarray(tokens, jnp.int32)}
        if self.num_classes:
            condition["label"] = (jnp.full((condition["tokens"].shape[0],), self.num_classes,
                                           jnp.int32) if labels is None else labels)
        return condition

    def cycled_labels(self, num: int, labels=None):
        """The condition to sample: given as a condition, or the class prompts of labels
        int [num] (default 0, 1, ..., K-1, 0, ...)."""
        if isinstance(labels, Mapping):
            return labels
        classes = jnp.arange(num) % self.data.num_classes if labels is None else labels
        return self.prompt_condition(self.class_prompts[classes],
                                     classes if self.num_classes else None)

    def drop_condition(self, condition, rng):
        """Classifier-free guidance training: the empty prompt replaces a caption with
        probability model.prompt_dropout (the label, if any, is dropped by its own key)."""
        prompt_rng, label_rng = jax.random.split(rng)
        tokens = condition["tokens"]
        out = dict(condition)
        if self.prompt_dropout > 0:
            drop = jax.random.bernoulli(prompt_rng, self.prompt_dropout, tokens.shape[:1])
            out["tokens"] = jnp.where(drop[:, None], self.empty_prompt(tokens), tokens)
        if "label" in condition:
            out["label"] = super().drop_condition(condition["label"], label_rng)
        return out

    def null_condition(self, condition):
        out = {"tokens": self.empty_prompt(condition["tokens"])}
        if "label" in condition:
            out["label"] = jnp.full_like(condition["label"], self.num_classes)
        return out


class TextDiffusionFamily(TextConditioning, diffusion.DiffusionFamily):
    """Keys: `KEYS` (python -m jaxgen.keys text_diffusion)."""
    keys = KEYS


class TextLatentDiffusionFamily(TextConditioning, latent_diffusion.LatentDiffusionFamily):
    """Keys: `LATENT_KEYS` (python -m jaxgen.keys text_latent_diffusion)."""
    keys = LATENT_KEYS
