"""A word-level tokenizer whose vocabulary is built from the training captions.

Text is lower-cased and split into words (letters, digits, hyphens, apostrophes) and commas.
Every encoding starts with the start token, so the empty prompt (classifier-free guidance's
unconditional input) is one real token and attention over a prompt never has an empty set of
keys. Unknown words map to the unknown token; padding is token 0.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Sequence

import numpy as np

from jaxgen.core.config import ConfigError

PAD, UNK, START = "<pad>", "<unk>", "<start>"
SPECIALS = (PAD, UNK, START)
PAD_ID, UNK_ID, START_ID = 0, 1, 2
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*|,")


class TokenizerError(ConfigError):
    """A prompt the tokenizer cannot encode, or a vocabulary file it cannot read."""


def words(text: str) -> list[str]:
    """'A dark Ankle boot, small' -> ['a', 'dark', 'ankle', 'boot', ',', 'small']."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """The text as the tokenizer sees it: words joined by single spaces, commas attached."""
    return " ".join(words(text)).replace(" ,", ",")


class Tokenizer:
    """vocabulary: the special tokens, then the words, in id order."""

    kind = "words"

    def __init__(self, vocabulary: Sequence[str], max_tokens: int):
        if tuple(vocabulary[:len(SPECIALS)]) != SPECIALS:
            raise TokenizerError(f"a vocabulary starts with {', '.join(SPECIALS)}")
        if len(set(vocabulary)) != len(vocabulary):
            raise TokenizerError("the vocabulary repeats a word")
        self.vocabulary = tuple(vocabulary)
        self.max_tokens = max_tokens
        self._ids = {word: i for i, word in enumerate(self.vocabulary)}

    @classmethod
    def build(cls, captions: Iterable[str], max_tokens: int) -> "Tokenizer":
        """The vocabulary of `captions` in sorted order (so the same captions give the same
        ids on any machine)."""
        found = sorted({w for caption in captions for w in words(caption)})
        return cls(SPECIALS + tuple(found), max_tokens)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> np.ndarray:
        """int32 [max_tokens]: start, the words' ids (unknown -> UNK_ID), padding."""
        ids = [START_ID] + [self._ids.get(w, UNK_ID) for w in words(text)]
        if len(ids) > self.max_tokens:
            raise TokenizerError(f"'{text}' has {len(ids) - 1} words; this model reads at "
                                 f"most {self.max_tokens - 1} (data.max_tokens - 1)")
        out = np.zeros(self.max_tokens, np.int32)
        out[:len(ids)] = ids
        return out

    def encode_all(self, texts: Sequence[str]) -> np.ndarray:
        """int32 [len(texts), max_tokens]."""
        return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros(
            (0, self.max_tokens), np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """The words of ids, without start and padding: decode(encode(t)) == normalise(t)
        for t of known words."""
        kept = [self.vocabulary[int(i)] for i in ids if int(i) not in (PAD_ID, START_ID)]
        return " ".join(kept).replace(" ,", ",")

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in words(text) if w not in self._ids]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "vocabulary": list(self.vocabulary),
                           "max_tokens": self.max_tokens}, indent=1)

    @classmethod
    def from_payload(cls, payload: dict) -> "Tokenizer":
        return cls(list(payload["vocabulary"]), int(payload["max_tokens"]))

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer") -> "Tokenizer":
        try:
            return cls.from_payload(json.loads(text))
        except (ValueError, KeyError, TypeError) as e:
            raise TokenizerError(f"{source} is not a jaxgen tokenizer file: {e}") from None
