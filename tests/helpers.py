"""Shared by the tests: a tiny VAE config and a way to run the CLIs in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Sample metrics on few samples, with the digits classifier every test shares (conftest.py
# points JAXGEN_CACHE at one directory per test session).
SMALL_EVAL = [
    "--config.eval.num_samples=256", "--config.eval.sample_batch_size=64",
    "--config.eval.kid_subsets=20", "--config.eval.extractor_steps=500",
]

TINY = [
    "--config=experiments/vae_digits.py",
    "--config.model.latent_dim=4", "--config.model.features=(8,16)", "--config.model.hidden=32",
    "--config.train.batch_size=32", "--config.eval.batch_size=64",
    "--config.eval.num_examples=128", "--config.eval.iwae_samples=10",
    "--config.eval.iwae_chunk=5", "--config.sample.num=16",
    "--config.train.log_every_steps=10", "--config.checkpoint.every_steps=10",
    "--config.eval.every_steps=20", "--config.sample.every_steps=1000",
    *SMALL_EVAL,
]


# What the resumption and device-count checks compare is training alone: no test evaluation
# and no pictures, not even at the last step (each would compile programs no check reads).
TRAINING_ONLY = ["--config.eval.every_steps=0", "--config.sample.every_steps=0"]


def env_with_devices(num_devices: int | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    if num_devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    return env


def run_cli(module: str, args: list[str], num_devices: int | None = None,
            timeout: int = 300, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"jaxgen.{module}", *args], cwd=cwd,
                          env=env_with_devices(num_devices), capture_output=True, text=True,
                          timeout=timeout)


def start_cli(module: str, args: list[str], **kwargs) -> subprocess.Popen:
    """A CLI in the background, its stderr kept (stdout dropped)."""
    return subprocess.Popen([sys.executable, "-m", f"jaxgen.{module}", *args], cwd=ROOT,
                            env=env_with_devices(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def start_train_processes(args: list[str], num_processes: int = 2,
                          devices_each: int = 2) -> list[subprocess.Popen]:
    """One jaxgen.train per process of a multi-process job on loopback (gloo collectives),
    stdout and stderr kept."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [subprocess.Popen(
        [sys.executable, "-m", "jaxgen.train", *args, f"--coordinator_address=127.0.0.1:{port}",
         f"--num_processes={num_processes}", f"--process_id={i}"],
        cwd=ROOT, env=env_with_devices(devices_each), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(num_processes)]


def checkpoint_steps(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(
        directory) else []


def wait_for_checkpoint(proc: subprocess.Popen, workdir: str, step: int,
                        timeout: float = 240) -> None:
    """Returns once workdir has a checkpoint at or past `step`; fails if proc ended first."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if checkpoint_steps(workdir) and checkpoint_steps(workdir)[-1] >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint >= {step} while running (exit {proc.poll()})")


def assert_same_state(workdir_a: str, workdir_b: str) -> None:
    """The newest checkpoints of two workdirs are of one step and hold identical arrays."""
    import jax
    import numpy as np
    step_a, state_a = final_state(workdir_a)
    step_b, state_b = final_state(workdir_b)
    assert step_a == step_b
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b) > 0
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(a, b)


def train_tiny(workdir: str, steps: int, *extra: str, num_devices: int | None = None):
    result = run_cli("train", [*TINY, f"--workdir={workdir}",
                               f"--config.train.num_steps={steps}", *extra], num_devices)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def final_state(workdir: str):
    """(step, state tree) of the newest checkpoint in workdir, restored onto one device."""
    import jax
    import orbax.checkpoint as ocp

    directory = os.path.join(workdir, "checkpoints")
    manager = ocp.CheckpointManager(directory,
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step()
    # Saved on another topology (e.g. 8 devices): restore onto this process's first device.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    metadata = ocp.StandardCheckpointer().metadata(os.path.join(directory, str(step), "state"))
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata.item_metadata.tree)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))
    manager.close()
    return step, restored["state"]


def assert_kill_and_resume_match(tmp: str, config_args: list[str], steps: int,
                                 kill_after: int, straight_workdir: str = "") -> None:
    """A run SIGKILLed once it has a checkpoint at or past `kill_after` and restarted ends
    at exactly the parameters (all of the state) of an uninterrupted run (straight_workdir:
    one already trained with these args, else one is trained here)."""
    import signal
    import time

    import jax
    import numpy as np

    args = [*config_args, *TRAINING_ONLY, f"--config.train.num_steps={steps}"]
    if not straight_workdir:
        straight_workdir = f"{tmp}/straight"
        # Checkpoints only at the end: the interval is not part of what a step computes.
        straight = run_cli("train", [*args, f"--workdir={straight_workdir}",
                                     f"--config.checkpoint.every_steps={steps}"])
        assert straight.returncode == 0, straight.stderr[-3000:]
    workdir = f"{tmp}/killed"
    proc = subprocess.Popen([sys.executable, "-m", "jaxgen.train", *args, f"--workdir={workdir}"],
                            cwd=ROOT, env=env_with_devices(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    checkpoints = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        saved = [int(d) for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(
            checkpoints) else []
        if saved and max(saved) >= kill_after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    assert killed_at < steps
    result = run_cli("train", [*args, f"--workdir={workdir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from step" in result.stderr
    step_a, state_a = final_state(straight_workdir)
    step_b, state_b = final_state(workdir)
    assert step_a == step_b == steps
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b) > 0
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(a, b)
    assert_trained_only(workdir)


def assert_trained_only(workdir: str) -> None:
    """every_steps=0 means never: the run logged no test metrics and drew no pictures."""
    from jaxgen.training.writers import read_metrics
    assert read_metrics(workdir, "train") and not read_metrics(workdir, "test")
    assert not os.path.isdir(os.path.join(workdir, "samples"))


def tree_snapshot(directory) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime in ns)} of every file and folder under directory: equal
    snapshots mean nothing was written, moved or deleted."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            out[os.path.relpath(path, directory)] = (stat.st_size if name in files else 0,
                                                     stat.st_mtime_ns)
    return out


def assert_devices_give_the_losses_of_one(tmp: str, config_args: list[str], steps: int,
                                          keys: tuple[str, ...], devices: int = 8) -> str:
    """A run on `devices` simulated devices logs the training metrics `keys` of a one-device
    run (at steps 1, 10, 20, ...) and ends at its parameters. Returns the one-device
    run's workdir.

    Keep `steps` at 20 or fewer: the two runs' metrics agree to ~5e-7 through step 20, but
    Adam turns the rounding differences of near-zero gradients into steps of the learning
    rate's size, and in the GANs those differences then grow (StyleGAN and CycleGAN: 6e-5 and
    4e-4 relative at step 30, 3e-3 at 40; parameters apart by up to 2e-3)."""
    import jax
    import numpy as np

    from jaxgen.training.writers import read_metrics

    rows, states = {}, {}
    for count in (1, devices):
        workdir = os.path.join(tmp, str(count))
        result = run_cli("train", [*config_args, *TRAINING_ONLY, f"--workdir={workdir}",
                                   f"--config.train.num_steps={steps}"], num_devices=count)
        assert result.returncode == 0, result.stderr[-3000:]
        rows[count] = read_metrics(workdir, "train")
        states[count] = final_state(workdir)[1]
    expected = [1, *range(10, steps + 1, 10)]
    assert [r["step"] for r in rows[1]] == [r["step"] for r in rows[devices]] == expected
    for a, b in zip(rows[1], rows[devices]):
        for key in keys:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, err_msg=f"{key} {a['step']}")
    for a, b in zip(jax.tree.leaves(states[1]["params"]),
                    jax.tree.leaves(states[devices]["params"])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    return os.path.join(tmp, "1")


def assert_resumes_exactly_on_any_device_count(tmp: str, config_args: list[str], steps: int,
                                               kill_after: int, keys: tuple[str, ...]) -> None:
    """Both checks above on one uninterrupted one-device run: `devices` 8 give its losses and
    parameters; SIGKILL at a checkpoint >= kill_after and a restart give its state exactly."""
    straight = assert_devices_give_the_losses_of_one(f"{tmp}/devices", config_args, steps, keys)
    assert_kill_and_resume_match(tmp, config_args, steps, kill_after, straight)
