"""python -m jaxgen.sweep --config=experiments/NAME.py --workdir=ROOT [--print] [--config.KEY=VALUE]

Runs the sweep an experiment file declares with `get_sweep()`: each point is an ordinary
workdir ROOT/<point name>, trained and evaluated by the ordinary CLIs, so a point
resumes like any run and a restarted sweep finishes the missing points only. With
--print, one shell command per point for a cluster scheduler instead.

An experiment declares its sweep as a list of (name, {config key: value}) points;
`grid` builds the cartesian product of axes:

    def get_sweep():
        return sweep.grid({"model.beta": [0.5, 1.0, 2.0], "seed": [0, 1, 2]})

Points that differ only in `sample.*` and `eval.*` keys (a guidance scale, a sampler)
share one trained workdir, named after their training keys ("base" when none), and
write their evaluations side by side as metrics_<point>.json.

SIGTERM or SIGINT goes on to the point running (which checkpoints and exits), the sweep
waits for it and exits with its code (75 after a checkpoint), starting nothing more; rerun
the same command to continue. A sweep killed outright (kill -9, a crash) takes the point it
runs with it (Linux: the kernel's parent-death signal; elsewhere the point shares the sweep's
process group), so the rerun resumes that point from its last checkpoint.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
from typing import Any, Mapping, Sequence

from jaxgen.core import config as config_lib

Point = tuple[str, dict[str, Any]]


def grid(axes: Mapping[str, Sequence[Any] | Mapping[str, Mapping[str, Any]]]) -> list[Point]:
    """The cartesian product of axes, in order, the last axis varying fastest.

    An axis is a config key with a list of values (point name part "key=value", with the
    key's last component) or a label with {option name: {key: value, ...}} for options that
    set several keys together (name part "label=option").
    """
    choices = []
    for label, values in axes.items():
        if isinstance(values, Mapping):
            choices.append([(f"{label}={option}", dict(overrides))
                            for option, overrides in values.items()])
        else:
            short = label.split(".")[-1]
            choices.append([(f"{short}={value}", {label: value}) for value in values])
    points = []
    for combination in itertools.product(*choices):
        name = "_".join(part for part, _ in combination)
        overrides: dict[str, Any] = {}
        for _, part in combination:
            overrides.update(part)
        points.append((name, overrides))
    return points


def load_sweep(spec: str) -> list[Point]:
    path = spec.partition(":")[0]
    module = config_lib.load_module(path, "sweep")
    if not hasattr(module, "get_sweep"):
        raise config_lib.ConfigError(f"{path} declares no sweep (no get_sweep())")
    points = list(module.get_sweep())
    names = [name for name, _ in points]
    if len(set(names)) != len(names):
        raise config_lib.ConfigError(f"{path}: sweep point names repeat")
    for name in names:
        if not name or "/" in name or name.startswith("."):
            raise config_lib.ConfigError(f"{path}: sweep point name '{name}' is not a directory "
                                         "name")
    return points


def override_text(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return repr(tuple(value))
    return str(value)


EVALUATION_PREFIXES = ("sample.", "eval.")


def layout(name: str, overrides: dict[str, Any]) -> tuple[str, str]:
    """(workdir name, metrics file name) of a point; see the module docstring."""
    train = {k: v for k, v in overrides.items() if not k.startswith(EVALUATION_PREFIXES)}
    if len(train) == len(overrides):
        return name, "metrics.json"
    workdir = "_".join(f"{k.split('.')[-1]}={override_text(v)}" for k, v in train.items())
    return workdir or "base", f"metrics_{name}.json"


def point_commands(spec: str, root: str, name: str, overrides: dict[str, Any],
                   common: list[str], num_samples: int | None,
                   python: str = sys.executable) -> list[list[str]]:
    """[train argv, evaluate argv] of one point; common overrides come first."""
    directory, output = layout(name, overrides)
    workdir = os.path.join(root, directory)
    train = [python, "-m", "jaxgen.train", f"--config={spec}", f"--workdir={workdir}"]
    train += [f"--config.{o}" for o in common]
    evaluate = [python, "-m", "jaxgen.evaluate", f"--workdir={workdir}", f"--output={output}"]
    for key, value in overrides.items():
        target = evaluate if key.startswith(EVALUATION_PREFIXES) and output != "metrics.json" \
            else train
        target.append(f"--config.{key}={override_text(value)}")
    if num_samples is not None:
        evaluate.append(f"--num_samples={num_samples}")
    return [train, evaluate]


def is_done(workdir: str, output: str = "metrics.json") -> bool:
    """A point is done when its metrics file is of the config's final step."""
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            num_steps = json.load(f)["train"]["num_steps"]
        with open(os.path.join(workdir, output), encoding="utf-8") as f:
            return json.load(f)["step"] == num_steps
    except (OSError, KeyError, ValueError):
        return False


# Linux's prctl(PR_SET_PDEATHSIG): the kernel signals the child when its parent dies.
_PR_SET_PDEATHSIG = 1
_DIES_WITH_PARENT = sys.platform.startswith("linux")


def _die_with(parent_pid: int) -> None:
    """Runs in the child between fork and exec: SIGKILL it when the sweep dies in any way
    (kill -9, a crash, the OOM killer), so no orphan trainer holds a point's workdir and
    blocks the restarted sweep. SIGKILL, not SIGTERM: a checkpointing orphan would still hold
    the lock when the sweep is rerun; resuming from the last checkpoint is exact anyway."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent_pid:
        os._exit(1)  # the sweep already died (or prctl failed): run nothing


class ChildRunner:
    """Runs one child at a time; while active, SIGTERM and SIGINT go on to the child, and
    `signum` records that one came. A child never outlives the sweep. On Linux it runs in its
    own session, so a terminal's Ctrl-C reaches it once, through us, and the kernel kills it
    when the sweep dies (_die_with). Elsewhere it stays in the sweep's process group, so a
    signal to the group reaches it, and only SIGTERM is forwarded: the terminal's SIGINT
    already reaches the whole group."""

    def __init__(self):
        self.child: subprocess.Popen | None = None
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> "ChildRunner":
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _forward(self, signum: int, frame) -> None:
        self.signum = signum
        if not _DIES_WITH_PARENT and signum == signal.SIGINT:
            return
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self, command: list[str]) -> int:
        if self.signum is not None:
            return 128 + self.signum
        if _DIES_WITH_PARENT:
            parent = os.getpid()
            self.child = subprocess.Popen(command, start_new_session=True,
                                          preexec_fn=lambda: _die_with(parent))
        else:
            self.child = subprocess.Popen(command)
        try:
            return self.child.wait()  # returns after the handler runs, once the child ends
        finally:
            self.child = None


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--config", required=True, help="experiments/NAME.py with get_sweep()")
    p.add_argument("--workdir", required=True, help="the sweep's root; one workdir per point")
    p.add_argument("--print", action="store_true", help="print the commands, run nothing")
    p.add_argument("--only", default="", help="comma-separated point names to run")
    p.add_argument("--num_samples", type=int, default=None,
                   help="passed to jaxgen.evaluate; default: the config's eval.num_samples")
    overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
    flags = p.parse_args([a for a in argv if not a.startswith("--config.")])
    points = load_sweep(flags.config)
    if flags.only:
        wanted = set(flags.only.split(","))
        unknown = wanted - {name for name, _ in points}
        if unknown:
            raise config_lib.ConfigError(
                f"--only names unknown points: {', '.join(sorted(unknown))}")
        points = [pt for pt in points if pt[0] in wanted]
    # Every point's config must load before anything runs: a typo fails the sweep at once.
    for name, point in points:
        config_lib.load(flags.config, overrides + [f"{k}={override_text(v)}"
                                                    for k, v in point.items()])
    # Printed commands name `python`: the scheduler's environment decides which one.
    python = "python" if flags.print else sys.executable
    commands = {name: point_commands(flags.config, flags.workdir, name, point, overrides,
                                     flags.num_samples, python) for name, point in points}
    if flags.print:
        # One line per trained workdir: its training, then each of its evaluations, so that
        # points sharing a workdir never train it concurrently.
        lines: dict[str, list[str]] = {}
        for name, (train, evaluate) in commands.items():
            lines.setdefault(layout(name, dict(points)[name])[0], [shlex.join(train)]).append(
                shlex.join(evaluate))
        for parts in lines.values():
            print(" && ".join(parts))
        return
    os.makedirs(flags.workdir, exist_ok=True)
    failed = []
    runner = ChildRunner()
    with runner:
        for index, (name, (train, evaluate)) in enumerate(commands.items(), 1):
            directory, output = layout(name, dict(points)[name])
            workdir = os.path.join(flags.workdir, directory)
            if is_done(workdir, output):
                print(f"[sweep] {index}/{len(commands)} {name}: done already", flush=True)
                continue
            print(f"[sweep] {index}/{len(commands)} {name}: {shlex.join(train)}", flush=True)
            for command in (train, evaluate):
                code = runner.run(command)
                if runner.signum is not None:
                    print(f"[sweep] stopped by {signal.Signals(runner.signum).name} in point "
                          f"{name} (its exit code {code}); rerun the same command to continue",
                          file=sys.stderr, flush=True)
                    sys.exit(code if code > 0 else 128 + runner.signum)
                if code != 0:
                    failed.append(name)
                    break
    if failed:
        print(f"error: {len(failed)} sweep point(s) failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)

