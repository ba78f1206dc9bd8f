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
    "--config.eval.kid_block_size=64", "--config.eval.extractor_steps=500",
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


def env_with_devices(num_devices: int | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    if num_devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    return env


def run_cli(module: str, args: list[str], num_devices: int | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"jaxgen.{module}", *args], cwd=ROOT,
                          env=env_with_devices(num_devices), capture_output=True, text=True,
                          timeout=timeout)


def train_tiny(workdir: str, steps: int, *extra: str, num_devices: int | None = None):
    result = run_cli("train", [*TINY, f"--workdir={workdir}",
                               f"--config.train.num_steps={steps}", *extra], num_devices)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
