"""Process-wide settings: determinism flags before the backend starts, the compilation
cache, profiles, and FLOPs in the training log."""

import json
import os
import subprocess
import sys


from jaxgen import runtime
from tests.helpers import ROOT, TINY, env_with_devices, run_cli

PROBE = """
import os, sys
from jaxgen import cli, runtime
flags, overrides = cli.parse(cli.parser(""), sys.argv[1:])
assert not runtime.backend_started()
cli.init_runtime(flags, overrides)
flags_before_backend = os.environ.get("XLA_FLAGS", "")
import jax
jax.devices()
print(flags_before_backend)
print(jax.config.jax_compilation_cache_dir)
"""


def _probe(tmp_path, *extra, env=None):
    result = subprocess.run([sys.executable, "-c", PROBE, "--config=experiments/vae_digits.py",
                             f"--workdir={tmp_path}", *extra], cwd=ROOT, capture_output=True,
                            text=True, env=env or env_with_devices(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def test_the_determinism_key_sets_xla_flags_before_the_backend_starts(tmp_path):
    xla_flags, cache = _probe(tmp_path)
    assert "--xla_gpu_deterministic_ops=true" in xla_flags
    assert cache == os.path.join(os.environ["JAXGEN_CACHE"], "xla")
    xla_flags, _ = _probe(tmp_path, "--config.train.deterministic=False")
    assert "deterministic" not in xla_flags
    # A user's own setting of the flag wins; other flags are kept.
    env = dict(env_with_devices(2), JAXGEN_COMPILE_CACHE="off")
    env["XLA_FLAGS"] += " --xla_gpu_deterministic_ops=false"
    xla_flags, cache = _probe(tmp_path, env=env)
    assert xla_flags.split() == ["--xla_force_host_platform_device_count=2",
                                 "--xla_gpu_deterministic_ops=false"]
    assert cache == "None"


def test_configure_after_the_backend_started_says_the_flags_are_not_in_effect(monkeypatch):
    import jax
    jax.devices()
    monkeypatch.setenv("XLA_FLAGS", "")
    assert runtime.configure(deterministic=True) is False
    assert os.environ["XLA_FLAGS"] == ""  # untouched: it could not take effect any more
    assert runtime.configure(deterministic=False) is True


def test_a_restart_loads_its_steps_from_the_compilation_cache_and_a_profile_is_written(
        tmp_path, monkeypatch):
    # A cache of its own: the session's may hold these steps already.
    monkeypatch.setenv("JAXGEN_COMPILE_CACHE", str(tmp_path / "xla"))
    args = [*TINY, f"--workdir={tmp_path / 'run'}", "--config.train.profile_steps=2"]
    first = run_cli("train", [*args, "--config.train.num_steps=10"])
    assert first.returncode == 0, first.stderr[-2000:]
    cached = os.listdir(tmp_path / "xla")
    assert any("train_step" in name for name in cached)
    assert "profile of steps 4..5" in first.stderr
    traces = [f for _, _, files in os.walk(tmp_path / "run" / "profile") for f in files]
    assert any(f.endswith(".xplane.pb") for f in traces)
    # The training log carries the step's FLOPs as achieved TFLOP/s.
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any(r.get("tflops_per_sec", 0) > 0 for r in logged if r["split"] == "train")
    resumed = run_cli("train", [*args, "--config.train.num_steps=20"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Persistent-cache hits are logged by JAX at debug level only; the compile time is the
    # observable: a cache hit is a load, far below the first compile.
    def compile_seconds(stderr):
        line = next(s for s in stderr.splitlines() if "train step compiled in" in s)
        return float(line.split("compiled in ")[1].split(" s")[0])
    assert compile_seconds(resumed.stderr) < 0.5 * compile_seconds(first.stderr)
