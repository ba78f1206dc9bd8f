"""Text for conditioning: the tokenizer (tokenizer.py)."""
