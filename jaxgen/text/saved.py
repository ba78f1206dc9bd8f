"""A run's tokenizer.json read back: word-level (`tokenizer.py`; files without a "kind" are)
or CLIP's BPE (`clip.py`)."""

from __future__ import annotations

import json

from jaxgen.text.bpe import ClipTokenizer
from jaxgen.text.tokenizer import Tokenizer, TokenizerError

KINDS = {Tokenizer.kind: Tokenizer, ClipTokenizer.kind: ClipTokenizer}


def from_json(text: str, source: str = "tokenizer"):
    """The tokenizer a tokenizer.json describes; TokenizerError naming source otherwise."""
    try:
        payload = json.loads(text)
        kind = payload.get("kind", Tokenizer.kind)
        if kind not in KINDS:
            raise ValueError(f"unknown kind '{kind}'")
        return KINDS[kind].from_payload(payload)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TokenizerError(f"{source} is not a jaxgen tokenizer file: {e}") from None


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers give every text the same ids (whatever their max_tokens)."""
    def essence(t):
        return {k: v for k, v in json.loads(t.to_json()).items() if k != "max_tokens"}
    return essence(a) == essence(b)
