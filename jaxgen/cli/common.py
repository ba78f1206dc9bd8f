"""What the entry points share: flags, config resolution, one-line errors.

`--config=experiments/NAME.py[:ARG]` and `--config.KEY=VALUE` as in the Flax
examples; `--workdir=DIR`; multi-host flags for `jax.distributed.initialize`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from typing import Callable

import ml_collections

from jaxgen import families
from jaxgen.core import config as config_lib, config_keys, parallel, runtime
from jaxgen.data.sources import DatasetError
from jaxgen.engine import restore as restore_lib, runs
from jaxgen.training import workdir as workdir_lib
from jaxgen.training.periodic import NonFiniteLossError
from jaxgen.training.trainer import Preempted, Trainer

# Exit codes (documented in docs/clusters.md): 2 bad input or environment (one line on stderr),
# 3 a non-finite loss, 75 preempted by SIGTERM/SIGINT with a checkpoint written (EX_TEMPFAIL:
# requeue and rerun the same command), 130 interrupted before training started.
EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_PREEMPTED, EXIT_INTERRUPTED = 2, 3, 75, 130


def parser(description: str, workdir_required: bool = True) -> argparse.ArgumentParser:
    """The flags every entry point shares; description is its docstring's first line
    ("python -m jaxgen.train ..."), whose command names the program in --help."""
    words = description.split()
    prog = " ".join(words[:3]) if words[:2] == ["python", "-m"] else None
    p = argparse.ArgumentParser(description=description, allow_abbrev=False, prog=prog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="experiments/NAME.py[:ARG]; default: the workdir's config")
    p.add_argument("--workdir", required=workdir_required, help="the run's directory")
    p.add_argument("--allow_family", action="append", default=[], metavar="MODULE:FACTORY",
                   help="let a workdir's config (or the workdirs it names) load this family "
                        "from outside jaxgen; repeatable (also $JAXGEN_ALLOWED_FAMILIES)")
    p.add_argument("--multihost", action="store_true",
                   help="call jax.distributed.initialize() (TPU pods, SLURM, Open MPI detect "
                        "their cluster; elsewhere give the three flags below)")
    p.add_argument("--coordinator_address", help="host:port of process 0")
    p.add_argument("--num_processes", type=int)
    p.add_argument("--process_id", type=int)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Returns (flags, config overrides as 'KEY=VALUE'); unknown flags are errors.

    An override is `--config.KEY=VALUE` or, as argparse allows for flags, `--config.KEY VALUE`.
    """
    if "-h" in argv or "--help" in argv:
        p.epilog = keys_help(next((a.split("=", 1)[1] for a in argv
                                   if a.startswith("--config=")), None))
    overrides, rest = [], []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("--config."):
            rest.append(arg)
            continue
        if "=" not in arg:
            value = next(args, None)
            if value is None or value.startswith("--"):
                p.error(f"{arg} needs a value: {arg}=VALUE or {arg} VALUE")
            arg = f"{arg}={value}"
        overrides.append(arg[len("--config."):])
    flags = p.parse_args(rest)
    return flags, overrides


def keys_help(spec: str | None) -> str:
    """--help's list of config keys: those of the experiment --config names, at its values,
    with what each means; without --config, how to get that list."""
    if not spec:
        return ("config keys: add --config=experiments/NAME.py to --help to list the "
                "experiment's keys and values; set one with --config.KEY=VALUE")
    try:
        config = config_lib.load(spec)
        declared = {**config_keys.BASE_KEYS, **families.family_keys(config.family)}
    except config_lib.ConfigError as e:
        return f"config keys: cannot load {spec}: {e}"
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value
    walk(config, "")
    width = max(map(len, flat))
    lines = [f"config keys of {spec} (--config.KEY=VALUE or --config.KEY VALUE):"]
    for key in sorted(flat):
        meaning = declared[key].help if key in declared else ""
        lines.append(f"  {key:<{width}}  {flat[key]!r:<12}  {meaning}".rstrip())
    return "\n".join(lines)


def init_runtime(flags: argparse.Namespace, overrides: list[str],
                 config: ml_collections.ConfigDict | None = None) -> None:
    """Logging, then what must precede JAX's backend (`runtime.configure`: determinism flags,
    compilation cache), then multi-host initialisation. config: the run's, when it does not
    come from --config or the workdir."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("orbax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Orbax logs through absl, from its background threads too: a failed save logs a dozen
    # tracebacks before its exception reaches the checkpointer, which ends the run with one
    # line (or the exception's own traceback when it is not a disk condition).
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    sys.unraisablehook = _without_aborted_io(sys.unraisablehook)
    config = resolve_config(flags, overrides) if config is None else config
    runtime.configure(config.train.deterministic)

    if flags.multihost or flags.coordinator_address:
        parallel.initialize_distributed(flags.coordinator_address, flags.num_processes,
                                        flags.process_id)
        runtime.without_cache_for_cpu_collectives()


def _without_aborted_io(hook):
    """sys.unraisablehook minus the by-products of a checkpoint read or write that failed
    (a damaged file, a full disk): TensorStore's callbacks of operations still in flight
    when Orbax's event loop closed, and Orbax coroutines closed unfinished. The failure
    itself reaches the checkpointer as an exception and ends as one line."""
    def hook_(unraisable):
        error = unraisable.exc_value
        frames = traceback.extract_tb(unraisable.exc_traceback) if unraisable.exc_traceback \
            else []
        if (isinstance(error, RuntimeError) and str(error) == "Event loop is closed") or any(
                f"{os.sep}orbax{os.sep}" in frame.filename for frame in frames):
            return
        hook(unraisable)
    return hook_


def resolve_config(flags: argparse.Namespace, overrides: list[str]) -> ml_collections.ConfigDict:
    """The experiment file's config (or the workdir's saved one) with overrides applied."""
    for name in flags.allow_family:
        families.trust(name)
    if flags.config:
        return config_lib.load(flags.config, overrides)
    if not workdir_lib.has_config(flags.workdir):
        raise config_lib.ConfigError(f"no --config given and no "
                                     f"{workdir_lib.path(flags.workdir, workdir_lib.CONFIG_FILE)}"
                                     " to continue from")
    return config_lib.apply_overrides(families.complete(workdir_lib.read_config(flags.workdir)),
                                      overrides)


def config_from_workdir(flags: argparse.Namespace, overrides: list[str]) -> bool:
    """Whether resolve_config's family came from the workdir's config.json rather than from
    the user (an experiment file, a --config.family override)."""
    return not flags.config and not any(o.startswith("family=") for o in overrides)


def prepare(flags: argparse.Namespace, overrides: list[str]):
    """(config, splits, family) from the command line, every value checked; then the workdir
    must be writable (train, sample and evaluate all write to it). Nothing is written before
    the checks pass."""
    workdir_lib.check_usable(flags.workdir, write=False)
    config = resolve_config(flags, overrides)
    splits, family = runs.prepare_config(config, config_from_workdir(flags, overrides))
    workdir_lib.check_usable(flags.workdir, write=True)
    return config, splits, family


def restore(flags: argparse.Namespace, overrides: list[str]):
    """(config, splits, family, trainer, state) of the workdir's newest checkpoint."""
    config, splits, family = prepare(flags, overrides)
    run = restore_lib.load(flags.workdir, config=config, splits=splits, family=family)
    return config, splits, family, Trainer(config, family, splits), run.state


def main_guard(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    """Runs main(argv) (default: the command line's arguments); known failures end as one
    line on stderr and a non-zero exit."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (config_lib.ConfigError, DatasetError) as e:
        _exit(f"error: {e}", EXIT_BAD_INPUT)
    except NonFiniteLossError as e:
        _exit(f"error: {e}", EXIT_NON_FINITE)
    except Preempted as e:
        _exit(str(e), EXIT_PREEMPTED)
    except KeyboardInterrupt:
        _exit("interrupted", EXIT_INTERRUPTED)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        _exit(f"error: cannot write {e.filename or 'a file'}: {e.strerror}", EXIT_BAD_INPUT)


# The OS errors of the disk and paths: not bugs, so one line, not a traceback.
DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.ENOTDIR,
               errno.EISDIR, errno.EPERM)


def _exit(line: str, code: int) -> None:
    print(line, file=sys.stderr, flush=True)
    sys.exit(code)
