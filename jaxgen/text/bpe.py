"""CLIP's byte-level BPE tokenizer (Radford et al. 2021), read from local files in Hugging
Face's layout: vocab.json (the vocabulary {token: id}) and merges.txt (the merges, best first,
after a version comment), as Stable Diffusion pipelines hold them in tokenizer/; or, without
these two, the tokenizer.json transformers 5 saves.

Token ids in jaxgen are CLIP's ids plus one, so that 0 stays the padding of every jaxgen prompt
(masks are tokens != 0). A prompt is CLIP's <|startoftext|>, its BPE tokens and <|endoftext|>;
the empty prompt (classifier-free guidance's unconditional input) is the two markers alone, as
Stable Diffusion encodes "". The encoder that reads these tokens is `clip.py`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import unicodedata
from typing import Any, Sequence

import numpy as np

from jaxgen.text.tokenizer import TokenizerError

VOCAB, MERGES, FAST = "vocab.json", "merges.txt", "tokenizer.json"
START, END = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenisation (OpenAI's simple_tokenizer.py): the markers, English contractions,
# runs of letters, single digits, runs of other non-space characters. [^\W\d_] is a letter;
# Python's classes stand in for \p{L} and \p{N} and differ only on numerals that are not
# decimal digits ("²", "½": letters here, numbers there).
_PIECES = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|"
                     r"\d|(?:[^\s\w]|_)+", re.IGNORECASE)


class PretrainedTextError(TokenizerError):
    """A text-encoder or tokenizer folder that cannot be read, in one line naming it."""


def component(folder: str, sub: str, needed: str) -> str:
    """The folder holding `needed`: folder itself, or a pipeline's folder/sub."""
    for candidate in (folder, os.path.join(folder, sub)):
        if os.path.isfile(os.path.join(candidate, needed)):
            return candidate
    raise PretrainedTextError(f"{folder} has no {needed} (nor {sub}/{needed}): a CLIP "
                              f"{'tokenizer' if sub == 'tokenizer' else 'text encoder'} folder "
                              f"in Hugging Face's layout is expected (jaxgen/text/clip.py)")


def read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise PretrainedTextError(f"cannot read {path}: {e}") from None


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 byte values to printable characters (byte-level BPE
    sees text as these characters)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


class ClipTokenizer:
    """CLIP's byte-level BPE (Sennrich et al. 2016 merges over bytes; the end of a word marked
    by '</w>'), as OpenAI's simple_tokenizer.py and Hugging Face's CLIPTokenizer encode, for
    text that needs no ftfy repair: lower-cased, whitespace collapsed. Every byte has a token,
    so no word is unknown."""

    kind = "clip_bpe"

    def __init__(self, vocabulary: dict[str, int], merges: Sequence[tuple[str, str]],
                 max_tokens: int):
        for marker in (START, END):
            if marker not in vocabulary:
                raise PretrainedTextError(f"the BPE vocabulary lacks {marker}")
        self.vocabulary = dict(vocabulary)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.max_tokens = max_tokens
        self.byte_chars = bytes_to_unicode()
        self.char_bytes = {c: b for b, c in self.byte_chars.items()}
        self.tokens = {i: t for t, i in self.vocabulary.items()}
        self.start_id, self.end_id = self.vocabulary[START], self.vocabulary[END]

    @classmethod
    def read(cls, folder: str, max_tokens: int) -> "ClipTokenizer":
        """The tokenizer of folder (or of a pipeline's folder/tokenizer): vocab.json and
        merges.txt, or else the tokenizer.json of Hugging Face's tokenizers library."""
        for where in (folder, os.path.join(folder, "tokenizer")):
            if os.path.isfile(os.path.join(where, VOCAB)):
                return cls._read_vocab_and_merges(where, max_tokens)
            if os.path.isfile(os.path.join(where, FAST)):
                return cls._read_tokenizers_json(where, max_tokens)
        raise PretrainedTextError(f"{folder} has no {VOCAB} and {MERGES}, nor a {FAST} (itself "
                                  f"or in tokenizer/): not a CLIP tokenizer folder "
                                  f"(jaxgen/text/clip.py)")

    @classmethod
    def _read_vocab_and_merges(cls, where: str, max_tokens: int) -> "ClipTokenizer":
        vocabulary = read_json(os.path.join(where, VOCAB))
        try:
            with open(os.path.join(where, MERGES), encoding="utf-8") as f:
                lines = f.read().split("\n")
        except OSError as e:
            raise PretrainedTextError(f"cannot read {where}/{MERGES}: {e}") from None
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]  # a comment; later lines may start with '#', a token of CLIP's
        merges = [tuple(line.split()) for line in lines if line]
        if not isinstance(vocabulary, dict) or any(len(m) != 2 for m in merges):
            raise PretrainedTextError(f"{where} does not hold a BPE vocabulary ({VOCAB}: "
                                      f"{{token: id}}) and merges ({MERGES}: 'a b' lines)")
        return cls(vocabulary, merges, max_tokens)

    @classmethod
    def _read_tokenizers_json(cls, where: str, max_tokens: int) -> "ClipTokenizer":
        model = read_json(os.path.join(where, FAST)).get("model", {})
        if model.get("type") != "BPE" or model.get("end_of_word_suffix") != "</w>":
            raise PretrainedTextError(f"{where}/{FAST} is not CLIP's BPE (a BPE model with "
                                      f"end_of_word_suffix '</w>')")
        merges = [tuple(m.split()) if isinstance(m, str) else tuple(m)
                  for m in model.get("merges", [])]
        return cls(model.get("vocab", {}), merges, max_tokens)

    def __len__(self) -> int:
        """Ids in jaxgen's convention: CLIP's, shifted by one for the padding."""
        return max(self.vocabulary.values()) + 2

    def bpe(self, word: str) -> list[str]:
        """A pre-token's characters merged by rank, the last marked '</w>'."""
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def clip_ids(self, text: str) -> list[int]:
        """CLIP's ids of text, without the markers."""
        text = " ".join(unicodedata.normalize("NFC", text).split()).lower()
        ids = []
        for piece in _PIECES.findall(text):
            chars = "".join(self.byte_chars[b] for b in piece.encode("utf-8"))
            for token in self.bpe(chars):
                if token not in self.vocabulary:
                    raise TokenizerError(f"the BPE vocabulary has no token '{token}' of "
                                         f"'{text}'")
                ids.append(self.vocabulary[token])
        return ids

    def encode(self, text: str) -> np.ndarray:
        """int32 [max_tokens]: 1 + CLIP's ids of <|startoftext|> text <|endoftext|>, then 0s."""
        ids = [self.start_id] + self.clip_ids(text) + [self.end_id]
        if len(ids) > self.max_tokens:
            raise TokenizerError(f"'{text}' is {len(ids)} CLIP tokens with its two markers; "
                                 f"this model reads at most {self.max_tokens} (data.max_tokens)")
        out = np.zeros(self.max_tokens, np.int32)
        out[:len(ids)] = np.asarray(ids) + 1
        return out

    def encode_all(self, texts: Sequence[str]) -> np.ndarray:
        """int32 [len(texts), max_tokens]."""
        return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros(
            (0, self.max_tokens), np.int32)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of jaxgen ids, without markers and padding."""
        kept = [self.tokens[int(i) - 1] for i in ids
                if int(i) > 0 and int(i) - 1 not in (self.start_id, self.end_id)]
        data = b"".join(bytes(self.char_bytes[c] for c in t.removesuffix("</w>"))
                        + (b" " if t.endswith("</w>") else b"") for t in kept)
        return data.decode("utf-8", errors="replace").strip()

    def unknown_words(self, text: str) -> list[str]:
        return []  # byte-level: every text has tokens

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "vocabulary": self.vocabulary,
                           "merges": [" ".join(m) for m in self.merges],
                           "max_tokens": self.max_tokens})

    @classmethod
    def from_payload(cls, payload: dict) -> "ClipTokenizer":
        return cls(payload["vocabulary"], [tuple(m.split()) for m in payload["merges"]],
                   int(payload["max_tokens"]))
