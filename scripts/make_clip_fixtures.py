"""Regenerates tests/fixtures/clip: a small random CLIP text encoder and BPE tokenizer in a
Stable Diffusion pipeline's layout, with what Hugging Face transformers computes from them, so
that CI checks jaxgen's reader (`jaxgen/text/clip.py`) against transformers without PyTorch.

    pip install torch transformers safetensors
    python scripts/make_clip_fixtures.py [--out tests/fixtures/clip]

The tokenizer folder holds vocab.json and merges.txt (the layout of Stable Diffusion
pipelines) and the tokenizer.json transformers 5 saves. The BPE merges are learnt here from
the words of jaxgen's captions and a few others (CLIP's own files hold 48,894 merges; the
algorithm that applies them is the same). The vocabulary is laid out as CLIP's: the 256 byte
characters, the same with '</w>', one token per merge, then <|startoftext|> and
<|endoftext|>. `recorded.safetensors` holds, for each prompt of PROMPTS, CLIPTokenizer's ids
(padded with <|endoftext|> to MAX_TOKENS), its attention mask and CLIPTextModel's
last_hidden_state; `recorded.json` the prompts and the versions that computed them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "clip")
START, END = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 32
NUM_MERGES = 160
CORPUS = ("a an the photo of dark bright small large t-shirt top trouser pullover dress coat "
          "sandal shirt sneaker bag ankle boot zero one two three four five six seven eight "
          "nine sneakers boots shirts dresses").split()
PROMPTS = [
    "a dark sneaker",
    "A photo of a BRIGHT ankle boot",
    "ankle boot, small, dark",
    "t-shirt/top   with  7 stripes!",
    "it's a zebra's coat",
    "",
    "naïve café 42",
]
ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
               hidden_act="quick_gelu", layer_norm_eps=1e-5)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of bytes to printable characters (openai/gpt-2, encoder.py)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def learn_merges(words: list[str], num: int, byte_chars: dict[int, str]) -> list[tuple[str, str]]:
    """Greedy BPE (Sennrich et al. 2016) over the words' byte characters, '</w>' at each
    word's end; ties broken by the pair's text, so the merges are the same on any machine."""
    def chars(word):
        c = [byte_chars[b] for b in word.encode("utf-8")]
        return tuple(c[:-1] + [c[-1] + "</w>"])

    counts = collections.Counter(chars(w) for w in words)
    merges = []
    for _ in range(num):
        pairs = collections.Counter()
        for word, n in counts.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = collections.Counter()
        for word, n in counts.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        counts = merged
    return merges


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=OUT)
    out = p.parse_args().out

    import numpy as np
    import safetensors.numpy
    import torch
    import transformers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    byte_chars = bytes_to_unicode()
    merges = learn_merges(CORPUS, NUM_MERGES, byte_chars)
    tokens = list(byte_chars.values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m) for m in merges] + [START, END]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}

    shutil.rmtree(out, ignore_errors=True)
    source = os.path.join(out, "source")
    os.makedirs(source)
    with open(os.path.join(source, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(source, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(source)
    # The tokenizer/ folder holds both layouts: vocab.json and merges.txt (Stable Diffusion
    # pipelines on the Hub) and tokenizer.json (what transformers 5 saves).
    tokenizer.save_pretrained(os.path.join(out, "tokenizer"))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(source, name), os.path.join(out, "tokenizer", name))
    shutil.rmtree(source)

    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), bos_token_id=vocab[START],
                            eos_token_id=vocab[END], pad_token_id=vocab[END], **ENCODER)
    model = CLIPTextModel(config).eval()
    with torch.no_grad():  # LayerNorms away from their 1 and 0
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(os.path.join(out, "text_encoder"), safe_serialization=True)

    encoded = tokenizer(PROMPTS, padding="max_length", max_length=MAX_TOKENS,
                        return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=encoded["input_ids"]).last_hidden_state
    safetensors.numpy.save_file(
        {"input_ids": encoded["input_ids"].numpy().astype(np.int32),
         "attention_mask": encoded["attention_mask"].numpy().astype(np.int32),
         "last_hidden_state": hidden.numpy().astype(np.float32)},
        os.path.join(out, "recorded.safetensors"))
    with open(os.path.join(out, "recorded.json"), "w", encoding="utf-8") as f:
        json.dump({"prompts": PROMPTS, "max_tokens": MAX_TOKENS, "torch": torch.__version__,
                   "transformers": transformers.__version__,
                   "tokenizer_class": type(tokenizer).__name__}, f, indent=1,
                  ensure_ascii=False)
    print(f"wrote {out}: {len(vocab)} tokens, {len(merges)} merges, "
          f"{sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
