"""Prompt following of a text-to-image model: do samples show what their prompt names?

The suite names each class with each attribute value ("a dark sandal", "a large sandal", ...):
classes x attributes x 2 prompts. Every sample is labelled by the evaluation classifier (class
accuracy: the label is the prompt's class) and measured by the captioner that wrote the
training captions (attribute accuracy: the measured value, against the training median of the
prompt's class, is the one the prompt names; chance is 0.5). Prompts that name a pair held out
of the training captions are counted apart ("held_out_*"), beside the others ("seen_*").
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from jaxgen.data.captions import ATTRIBUTES, Captioner, fill
from jaxgen.eval.extractor import Extractor
from jaxgen.text.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class Prompt:
    """text; class_index; attribute: index into ATTRIBUTES; value: index of its value;
    held_out: the (value, class) pair never appears in a training caption."""
    text: str
    class_index: int
    attribute: int
    value: int
    held_out: bool


def suite(captioner: Captioner) -> list[Prompt]:
    """'a {value} {class}' for every class, attribute and value."""
    prompts = []
    for k, name in enumerate(captioner.class_words):
        for a, (attribute, words) in enumerate(ATTRIBUTES.items()):
            for v, word in enumerate(words):
                text = fill(f"a {{{attribute}}} {{class}}", name, {attribute: word})
                prompts.append(Prompt(text, k, a, v, captioner.prompt_held_out(word, k)))
    return prompts


# (tokens int32 [B, L], batch index) -> images [B, H, W, C] in [0, 1] on the host.
PromptSampler = Callable[[np.ndarray, int], np.ndarray]


def prompt_following(sample: PromptSampler, prompts: list[Prompt], tokenizer: Tokenizer,
                     classes: Extractor, captioner: Captioner, per_prompt: int,
                     batch_size: int) -> dict:
    """{"values": accuracies (seen_* and held_out_*: class, and each attribute on the prompts
    naming it), "prompts": one row per prompt}: per_prompt samples of each prompt."""
    order = np.repeat(np.arange(len(prompts)), per_prompt)
    tokens = tokenizer.encode_all([p.text for p in prompts])[order]
    labels, measured = [], []
    for b, start in enumerate(range(0, len(order), batch_size)):
        images = np.asarray(sample(tokens[start:start + batch_size], b))
        count = min(batch_size, len(order) - start)
        images = images[:count]
        labels.append(np.asarray(classes.apply(images)["label"])[:count])
        measured.append(captioner.measure(
            images, np.asarray([prompts[i].class_index for i in order[start:start + count]])))
    labels, measured = np.concatenate(labels), np.concatenate(measured)
    class_hit = labels == np.asarray([prompts[i].class_index for i in order])
    attribute_hit = (measured[np.arange(len(order)), [prompts[i].attribute for i in order]]
                     == np.asarray([prompts[i].value for i in order]))
    held = np.asarray([prompts[i].held_out for i in order])
    names = list(ATTRIBUTES)
    values = {}
    for group, rows in (("seen", ~held), ("held_out", held)):
        if not rows.any():
            continue
        values[f"{group}_class_accuracy"] = float(class_hit[rows].mean())
        for a, name in enumerate(names):
            mine = rows & (np.asarray([prompts[i].attribute for i in order]) == a)
            if mine.any():
                values[f"{group}_{name}_accuracy"] = float(attribute_hit[mine].mean())
    table = [{"prompt": p.text, "held_out": p.held_out,
              "class_accuracy": float(class_hit[order == i].mean()),
              "attribute_accuracy": float(attribute_hit[order == i].mean())}
             for i, p in enumerate(prompts)]
    return {"values": values, "prompts": table, "per_prompt": per_prompt}
