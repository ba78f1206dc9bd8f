"""One file per model family: its loss, steps and sampler, built from models and optax."""
