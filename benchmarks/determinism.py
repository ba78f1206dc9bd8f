"""Bit-reproducibility of training on this machine's accelerator: two uninterrupted runs with
the same seed, and a run SIGKILLed after its first checkpoint and restarted, against each
other, array by array.

python -m benchmarks.determinism [--experiment vae_digits] [--steps 200] [--deterministic 1]
    [--override KEY=VALUE ...] [--out FILE]

Writes benchmarks/results/determinism_<device kind>[_off].json: how many parameter and
optimiser arrays are bit-identical, and the largest difference.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def train(args: list[str], workdir: str, kill_at: int = 0) -> dict:
    """Runs jaxgen.train to the end, or SIGKILLs it once a checkpoint >= kill_at exists.

    Returns what happened: the exit code and, for a kill, the newest checkpoint at that
    moment (a run that finished before the kill landed says so, rather than passing for a
    killed one). The run's log goes to WORKDIR.log.
    """
    command = [sys.executable, "-m", "jaxgen.train", *args, f"--workdir={workdir}"]
    env = dict(os.environ)
    with open(f"{workdir}.log", "a", encoding="utf-8") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        checkpoints = os.path.join(workdir, "checkpoints")
        killed_at = None
        while kill_at and proc.poll() is None:
            steps = [int(d) for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(
                checkpoints) else []
            if steps and max(steps) >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at = max(steps)
                break
            time.sleep(0.01)
        code = proc.wait()
    if code not in (0, -signal.SIGKILL):
        with open(f"{workdir}.log", encoding="utf-8") as f:
            sys.exit(f"jaxgen.train failed ({code}); its log ends:\n{f.read()[-3000:]}")
    return {"returncode": code, "killed_after_checkpoint": killed_at}


def compare(workdir_a: str, workdir_b: str) -> dict:
    import jax
    from tests.helpers import final_state
    step_a, a = final_state(workdir_a)
    step_b, b = final_state(workdir_b)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    same = [np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b)]
    diff = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(leaves_a, leaves_b) if np.asarray(x).size)
    return {"steps": [int(step_a), int(step_b)], "arrays": len(same),
            "bit_identical": int(sum(same)), "max_abs_difference": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="vae_digits")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--deterministic", type=int, default=1)
    p.add_argument("--override", action="append", default=[])
    p.add_argument("--out", default="")
    args = p.parse_args()
    config = [f"--config=experiments/{args.experiment}.py",
              f"--config.train.num_steps={args.steps}",
              f"--config.train.deterministic={bool(args.deterministic)}",
              f"--config.checkpoint.every_steps={max(args.steps // 4, 1)}",
              f"--config.eval.every_steps={args.steps}",
              f"--config.sample.every_steps={args.steps}", "--config.eval.track_samples=0",
              *[f"--config.{o}" for o in args.override]]
    root = tempfile.mkdtemp(prefix="jaxgen_determinism_")
    start = time.perf_counter()
    train(config, f"{root}/a")
    train(config, f"{root}/b")
    kill = train(config, f"{root}/killed", kill_at=max(args.steps // 4, 1))
    restart = train(config, f"{root}/killed")
    from benchmarks.train_step import environment, write_record
    record = {
        **environment(),
        "config": config,
        "two_uninterrupted_runs": compare(f"{root}/a", f"{root}/b"),
        "kill": kill,
        "restart": restart,
        "killed_and_restarted_vs_uninterrupted": compare(f"{root}/a", f"{root}/killed"),
        "seconds": time.perf_counter() - start,
    }
    write_record(record, args.out, f"determinism{'' if args.deterministic else '_off'}")


if __name__ == "__main__":
    main()
