"""jaxgen: one trainer for generative image models in JAX/Flax.

The Python API (`jaxgen.engine.api`): `jaxgen.load_config`, `jaxgen.train`, `jaxgen.load` and the
`jaxgen.Model` they return. They load on first use (PEP 562), so `import jaxgen` and the
command-line tools that need none of it stay quick to start.
"""

import importlib

__version__ = "0.1.0"
API = ("load_config", "train", "load", "Model")


def __getattr__(name: str):
    if name == "train":  # the CLI module, callable as the API's train (jaxgen/train.py)
        return importlib.import_module("jaxgen.train")
    if name in API:
        return getattr(importlib.import_module("jaxgen.engine.api"), name)
    raise AttributeError(f"module 'jaxgen' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
