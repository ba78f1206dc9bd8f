"""jaxgen: one trainer for generative image models in JAX/Flax."""

__version__ = "0.1.0"
