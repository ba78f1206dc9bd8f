"""Text for conditioning: the word-level tokenizer (tokenizer.py), CLIP's BPE tokenizer (bpe.py)
and frozen text encoder (clip.py), a run's saved tokenizer read back (saved.py)."""
