"""Process-wide settings of a run that must be in place before JAX starts its backend or
compiles anything: GPU determinism, the persistent compilation cache, and the compiler
options of the initialisation.

XLA reads XLA_FLAGS once, when the backend starts; a flag added later has no effect on that
process. The entry points call `configure` first thing (through `cli.init_runtime`); called
later in a process (an entry point's main run from a notebook or a test), it leaves XLA_FLAGS
alone and warns if the backend is a GPU's.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger("jaxgen")

# Deterministic GPU kernels: XLA picks only deterministic convolution and scatter algorithms
# and no atomics-based reductions. Measured on an H100 (issue 14): without it two identical
# vae_digits runs agreed on 3 of 87 parameter arrays after 200 steps; with it, on all 87.
DETERMINISTIC_FLAGS = ("--xla_gpu_deterministic_ops=true",)
CACHE_ENV = "JAXGEN_COMPILE_CACHE"  # a directory, or "off"


def backend_started() -> bool:
    from jax._src import xla_bridge
    return bool(getattr(xla_bridge, "_backends", None))


def xla_flags_with(flags: str, extra: tuple[str, ...]) -> str:
    """flags plus those of extra whose names it does not set already (a user's explicit
    setting wins)."""
    present = {f.split("=")[0] for f in flags.split()}
    return " ".join([*flags.split(), *(f for f in extra if f.split("=")[0] not in present)])


def compile_cache_dir() -> str | None:
    """$JAXGEN_COMPILE_CACHE, or $JAXGEN_CACHE/xla (default ~/.cache/jaxgen/xla); None when
    set to "off"."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    return value or os.path.join(os.environ.get("JAXGEN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxgen"), "xla")


def configure(deterministic: bool) -> bool:
    """Adds the determinism flags to XLA_FLAGS (deterministic) and turns on the persistent
    compilation cache, so a restarted run loads its compiled steps instead of compiling
    them again. Returns False when the flags were wanted but the backend had started
    without them (they cannot take effect in this process)."""
    in_effect = True
    if deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        wanted = xla_flags_with(flags, DETERMINISTIC_FLAGS)
        if wanted != flags and backend_started():
            in_effect = False
            if jax.default_backend() == "gpu":
                log.warning("train.deterministic: the GPU backend started before the flags "
                            "%s were set; this process is not bit-reproducible",
                            DETERMINISTIC_FLAGS)
        elif wanted != flags:
            os.environ["XLA_FLAGS"] = wanted
    directory = compile_cache_dir()
    if directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        # Cache every step that took a while to compile, whatever its size.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return in_effect


def without_cache_for_cpu_collectives() -> None:
    """Turns the persistent compilation cache off in a multi-process job on CPU, after
    `jax.distributed.initialize`: a train step whose cross-process collectives (gloo) were
    loaded from the cache, instead of compiled in this job, deadlocked in its first step
    (measured: tests/test_training.py's two-process run hung after the multi-host SIGTERM
    test had cached the same step; it passes with the cache off). GPU and TPU jobs keep it."""
    if jax.process_count() > 1 and jax.default_backend() == "cpu":
        jax.config.update("jax_enable_compilation_cache", False)
        log.info("multi-process CPU job: the persistent compilation cache is off")


# At XLA:CPU's default optimisation level, compiling the initialisation (threefry and the
# initialisers of every parameter) was half of a cold start: 17 s of 35 for ddpm_fashion_mnist.
# Level 1 compiles it several times faster into bit-identical weights for every shipped
# experiment and the evaluation classifiers (`benchmarks/init_compile.py`; level 0 is faster
# still but contracts multiply-adds differently: 1 ulp in ~3% of the weights). It runs once;
# the train step keeps the default level, at which it runs faster. Not applied on GPU/TPU,
# where it has not been measured.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_compiler_options(mesh: jax.sharding.Mesh) -> dict | None:
    return INIT_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None
