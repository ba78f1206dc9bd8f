"""Process-wide settings: determinism flags before the backend starts, the compilation
cache, profiles, and FLOPs in the training log."""

import json
import os
import subprocess
import sys

import pytest

from jaxgen.core import runtime
from tests.helpers import ROOT, TINY, env_with_devices, run_cli

PROBE = """
import os, sys
from jaxgen.cli import common as cli
from jaxgen.core import runtime
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


def test_restart_hits_the_compile_cache_a_profile_is_written_piped_output_reads_as_lines(
        tmp_path, monkeypatch):
    # A cache of its own: the session's may hold these steps already.
    monkeypatch.setenv("JAXGEN_COMPILE_CACHE", str(tmp_path / "xla"))
    args = [*TINY, f"--workdir={tmp_path / 'run'}", "--config.train.profile_steps=2"]
    first = run_cli("train", [*args, "--config.train.num_steps", "10"])
    assert first.returncode == 0, first.stderr[-2000:]
    # Piped output: no progress-bar frames, log lines whole; the first step logged at once;
    # a closing summary of what was written where.
    assert "\r" not in first.stderr and "%|" not in first.stderr
    assert "train step 1:" in first.stderr
    assert f"checkpoints  {tmp_path / 'run' / 'checkpoints'} (steps 10)" in first.stdout
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


def test_config_overrides_take_their_value_after_a_space_or_an_equals_sign():
    from jaxgen.cli import common as cli
    _, overrides = cli.parse(cli.parser(""), ["--workdir=w", "--config.train.num_steps", "10",
                                              "--config.model.beta=2", "--config.seed", "-3"])
    assert overrides == ["train.num_steps=10", "model.beta=2", "seed=-3"]
    with pytest.raises(SystemExit):
        cli.parse(cli.parser(""), ["--workdir=w", "--config.seed"])


def test_help_lists_the_experiments_config_keys(capsys):
    from jaxgen.cli import common as cli, train
    with pytest.raises(SystemExit):
        cli.parse(cli.parser(train.__doc__.splitlines()[0]),
                  ["--config=experiments/ddpm_digits.py", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m jaxgen.train")
    assert "model.num_timesteps" in out and "train.lr_schedule" in out
    assert "steps of linear warmup from 0 to learning_rate" in out  # what the key means


def test_the_console_command_runs_the_entry_points():
    # `jaxgen COMMAND` (setup.cfg's console script) is jaxgen.__main__:main.
    import configparser
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    assert "jaxgen = jaxgen.__main__:main" in setup["options.entry_points"]["console_scripts"]
    listed = subprocess.run([sys.executable, "-m", "jaxgen", "keys", "base"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "`train.lr_schedule`" in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "jaxgen", "tran"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("error: unknown command 'tran' (known: train, sample, "
                                      "evaluate, translate, sweep, report, keys, "
                                      "import_pretrained, export)")


def test_long_loops_log_their_progress_with_the_time_left(caplog):
    import logging

    from jaxgen.core.progress import Progress
    progress = Progress("sampling", total=4, every_seconds=0.0)
    with caplog.at_level(logging.INFO, logger="jaxgen"):
        for done in range(1, 5):
            progress.update(done)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # none once everything is done
    assert lines[0].startswith("sampling: 1 of 4, ") and lines[0].endswith(" s left")
