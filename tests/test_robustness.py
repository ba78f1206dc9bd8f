"""A run on a cluster: readers beside a trainer, preemption, the workdir lock, code named by
workdirs, any device count, checkpoint integrity, and bad input or a bad disk as one line."""

import contextlib
import fcntl
import glob
import gzip
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.training import checkpoint as checkpoint_lib
from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib
from jaxgen.engine import restore as trained
from tests.helpers import (ROOT, SMALL_EVAL, TINY, assert_same_state, checkpoint_steps,
                           env_with_devices, final_state, run_cli, start_cli,
                           start_train_processes, train_tiny, tree_snapshot,
                           wait_for_checkpoint)

STEPS = 200


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> str:
    """An undisturbed tiny run of STEPS steps: what every interrupted run must end at."""
    workdir = str(tmp_path_factory.mktemp("straight") / "run")
    train_tiny(workdir, STEPS)
    return workdir


def _one_line_error(stderr: str, code_expected: int, returncode: int, *fragments: str) -> str:
    assert returncode == code_expected, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, last
    return last


# Readers beside a trainer, and a second trainer.

@pytest.mark.slow
def test_sample_and_evaluate_beside_a_training_run_change_nothing_it_computes(tmp_path,
                                                                             straight):
    workdir = str(tmp_path / "run")
    # Checkpoints every 5 steps, 3 kept: readers meet saves in progress and deletions.
    proc = start_cli("train", [*TINY, f"--workdir={workdir}", f"--config.train.num_steps={STEPS}",
                               "--config.checkpoint.every_steps=5"])
    wait_for_checkpoint(proc, workdir, 5)
    readers = 0
    while proc.poll() is None:
        for module, args in (("sample", ["--num=4"]), ("evaluate", ["--num_samples=0"])):
            result = run_cli(module, [f"--workdir={workdir}", *args])
            assert result.returncode == 0, result.stderr[-3000:]
            readers += 1
    _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert readers >= 2
    assert_same_state(straight, workdir)


def test_a_second_trainer_on_a_workdir_exits_naming_the_first(tmp_path):
    workdir = str(tmp_path / "run")
    first = start_cli("train", [*TINY, f"--workdir={workdir}", "--config.train.num_steps=100000"])
    try:
        wait_for_checkpoint(first, workdir, 10)
        rows = open(os.path.join(workdir, "metrics.jsonl")).read()
        second = run_cli("train", [*TINY, f"--workdir={workdir}",
                                   "--config.train.num_steps=100000"])
        _one_line_error(second.stderr, 2, second.returncode, f"pid {first.pid} on host",
                        "is being trained by")
        assert open(os.path.join(workdir, "metrics.jsonl")).read().startswith(rows)
    finally:
        first.kill()
        first.wait()
    # The OS released the killed holder's lock: a new trainer takes the workdir over.
    with open(os.path.join(workdir, "train.lock")) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


# Preemption.

@pytest.mark.slow
def test_sigterm_checkpoints_the_step_reached_and_the_restart_ends_exactly(tmp_path, straight):
    workdir = str(tmp_path / "run")
    proc = start_cli("train", [*TINY, f"--workdir={workdir}", f"--config.train.num_steps={STEPS}"])
    wait_for_checkpoint(proc, workdir, 40)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    last = _one_line_error(err, cli.EXIT_PREEMPTED, proc.returncode, "stopped by SIGTERM at step")
    stopped_at = int(last.split("at step ")[1].split(":")[0])
    assert 40 <= stopped_at < STEPS and checkpoint_steps(workdir)[-1] == stopped_at
    resumed = run_cli("train", [*TINY, f"--workdir={workdir}", f"--config.train.num_steps={STEPS}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {stopped_at}" in resumed.stderr
    assert_same_state(straight, workdir)


@pytest.mark.slow
def test_sigterm_to_one_host_stops_every_host_at_one_step(tmp_path):
    """Multi-host: the coordination service agrees on the step; each process checkpoints it
    (a collective save) and exits with the preemption code."""
    workdir = str(tmp_path / "run")
    procs = start_train_processes([*TINY, f"--workdir={workdir}",
                                   "--config.train.num_steps=100000"])
    try:
        wait_for_checkpoint(procs[0], workdir, 20)
        procs[1].send_signal(signal.SIGTERM)
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    lines = [_one_line_error(err, cli.EXIT_PREEMPTED, p.returncode, "stopped by SIGTERM at step")
             for p, err in zip(procs, errors)]
    assert lines[0] == lines[1]
    stopped_at = int(lines[0].split("at step ")[1].split(":")[0])
    assert checkpoint_steps(workdir)[-1] == stopped_at >= 20


def test_a_second_signal_exits_at_once():
    script = textwrap.dedent("""
        import os, signal, time
        from jaxgen.training import preemption
        with preemption.StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a duplicate delivery counts once
            assert stop.requested(1) and stop.name == "SIGINT"
            stop.first_at -= preemption.DUPLICATE_WINDOW_S + 1
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        print("not reached")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env_with_devices(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    assert "second SIGTERM: exiting without a checkpoint" in result.stderr
    assert "not reached" not in result.stdout


@pytest.mark.slow
def test_a_sweep_forwards_sigterm_to_its_trainer_and_resumes_exactly(tmp_path, straight):
    experiment = tmp_path / "one_point.py"
    experiment.write_text(textwrap.dedent(f"""
        from jaxgen.core import config
        def get_config():
            return config.load_module({os.path.join(ROOT, 'experiments', 'vae_digits.py')!r},
                                      'vae_digits').get_config()
        def get_sweep():
            return [("only", {{}})]
    """))
    overrides = [a for a in TINY if a.startswith("--config.")]
    args = [f"--config={experiment}", f"--workdir={tmp_path / 'sweep'}", "--num_samples=0",
            *overrides, f"--config.train.num_steps={STEPS}"]
    workdir = str(tmp_path / "sweep" / "only")
    proc = start_cli("sweep", args)
    wait_for_checkpoint(proc, workdir, 40)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_PREEMPTED, err[-3000:]
    assert "stopped by SIGTERM at step" in err and "[sweep] stopped by SIGTERM" in err
    # The trainer ended with the sweep: nothing holds the workdir.
    with open(os.path.join(workdir, "train.lock")) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert checkpoint_steps(workdir)[-1] < STEPS
    again = run_cli("sweep", args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_state(straight, workdir)


# Code named by a workdir.

EVIL_MODULE = """
import pathlib
pathlib.Path(__file__).with_name("IMPORTED").write_text("jaxgen ran code from a workdir")
class Factory:
    def __init__(self, *args):
        pass
"""


def _workdir_naming_code(tmp_path, straight) -> str:
    workdir = tmp_path / "shared"
    workdir.mkdir()
    config = json.load(open(os.path.join(straight, "config.json")))
    config["family"] = "evil_family:Factory"
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "evil_family.py").write_text(EVIL_MODULE)
    return str(workdir)


def test_a_workdir_naming_a_module_beside_it_runs_no_code(tmp_path, straight):
    workdir = _workdir_naming_code(tmp_path, straight)
    for module in ("sample", "evaluate", "train"):
        # cwd = the workdir: `python -m` puts it on sys.path, so an import would succeed.
        result = run_cli(module, [f"--workdir={workdir}"], cwd=workdir)
        _one_line_error(result.stderr, 2, result.returncode, "evil_family:Factory",
                        "--allow_family=evil_family:Factory")
        assert not os.path.exists(os.path.join(workdir, "IMPORTED")), module
    # The same through a key naming another workdir (a frozen autoencoder, a classifier).
    with pytest.raises(config_lib.ConfigError, match="model.autoencoder_workdir: family "
                                                     "'evil_family:Factory' is code"):
        sys.path.insert(0, workdir)
        try:
            trained.load(workdir, "model.autoencoder_workdir")
        finally:
            sys.path.remove(workdir)
    assert not os.path.exists(os.path.join(workdir, "IMPORTED"))


# Any device count.

EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_each_experiment_validates_on_any_device_count_or_names_the_fix(path):
    for devices in (1, 2, 3, 4, 6, 8):
        config = config_lib.load(path)
        try:
            config_lib.validate(config, devices, 1)
        except config_lib.ConfigError as e:
            # Only the training batch may need a change, and the error says to what.
            fix = str(e).split("set --config.train.batch_size=")[1].split(" ")[0]
            config.train.batch_size = int(fix)
            config_lib.validate(config, devices, 1)
            assert int(fix) % devices == 0


@pytest.mark.slow
def test_vae_digits_trains_samples_and_evaluates_on_3_and_8_devices(tmp_path):
    # Batches of 24 train on both; evaluation batches of 50 pad to 51 and 56. A classifier of
    # its own (60 steps) is trained by the 3-device evaluation, on 2 of the 3 devices (its
    # batch of 128 is fixed), and reused by the 8-device one.
    args = ["--config.train.batch_size=24", "--config.eval.batch_size=50",
            "--config.eval.sample_batch_size=50", "--config.eval.num_examples=0",
            "--config.eval.extractor_steps=60"]
    trained_only = ["--config.eval.every_steps=0", "--config.sample.every_steps=0"]
    values = {}
    for devices in (3, 8):
        workdir = str(tmp_path / f"devices{devices}")
        train_tiny(workdir, 40, *args, *trained_only, num_devices=devices)
        sampled = run_cli("sample", [f"--workdir={workdir}", "--num=9"], num_devices=devices)
        assert sampled.returncode == 0, sampled.stderr[-3000:]
        evaluated = run_cli("evaluate", [f"--workdir={workdir}"], num_devices=devices)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        assert ("training the evaluation classifier" in evaluated.stderr) == (devices == 3)
        record = json.load(open(os.path.join(workdir, "metrics.json")))
        assert record["num_samples"] == 256 and record["num_examples"] == 359
        values[devices] = record["values"]
    # Padding changes no number: the two runs differ only in summation order.
    for key in ("neg_elbo", "iwae_nll", "recon_mse_per_pixel"):
        np.testing.assert_allclose(values[3][key], values[8][key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(values[3]["fid"], values[8]["fid"], rtol=1e-2)


# Checkpoint integrity.

def _small_checkpoint(directory: str):
    state = {"w": jnp.arange(4096, dtype=jnp.float32) * 0.37, "step": jnp.int32(7)}
    saver = checkpoint_lib.Checkpointer(directory, keep=3)
    saver.save(1, jax.tree.map(jnp.zeros_like, state), {"step": 1})
    saver.save(2, state, {"step": 2})
    saver.wait()
    saver.close()
    return state


def test_a_reader_opens_a_run_read_only_without_warnings(tmp_path, caplog):
    directory = str(tmp_path / "checkpoints")
    state = _small_checkpoint(directory)
    with caplog.at_level(logging.WARNING):
        reader = checkpoint_lib.Checkpointer(directory, keep=3, read_only=True)
        restored, _ = reader.restore_latest(state)
        reader.close()
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_every_flipped_bit_in_an_array_file_is_detected(tmp_path):
    directory = str(tmp_path / "checkpoints")
    state = _small_checkpoint(directory)
    data = max(glob.glob(f"{directory}/2/state/**/d/*", recursive=True), key=os.path.getsize)
    original = open(data, "rb").read()

    def flip(position: int) -> None:
        damaged = bytearray(original)
        damaged[position] ^= 1 << (position % 8)
        open(data, "wb").write(bytes(damaged))

    outcomes = {}
    for position in range(0, len(original), max(len(original) // 40, 1)):
        flip(position)
        reader = checkpoint_lib.Checkpointer(directory, keep=3, read_only=True)
        try:
            restored, _ = reader.restore_latest(state)
            # Undamaged values (a flip outside the arrays' bytes) are the only other outcome.
            np.testing.assert_array_equal(restored["w"], state["w"])
            outcomes[position] = "intact"
        except checkpoint_lib.CheckpointDamagedError as e:
            outcomes[position] = ("checksum" if "differ from their checksums" in str(e)
                                  else "unreadable")
        finally:
            reader.close()
    caught = [p for p, outcome in outcomes.items() if outcome == "checksum"]
    assert caught, outcomes  # flips that decode to other values are caught by the checksum
    # The trainer's checkpointer sets the damaged one aside and uses the one before.
    flip(caught[0])
    writer = checkpoint_lib.Checkpointer(directory, keep=3)
    _, position = writer.restore_latest(state)
    writer.close()
    assert position == {"step": 1} and os.path.isdir(f"{directory}_broken/2")


def test_checksums_are_those_of_the_arrays_on_any_devices():
    tree = {"a": jnp.linspace(-3, 3, 1000), "b": jnp.arange(10, dtype=jnp.int32),
            "c": jnp.ones((3, 3), jnp.bfloat16), "d": jnp.array([True, False])}
    sums = checkpoint_lib.array_checksums(tree)
    assert sums == checkpoint_lib.array_checksums(jax.tree.map(np.asarray, tree))
    flipped = np.asarray(tree["a"]).copy()
    flipped.view(np.uint32)[500] ^= 1 << 31
    assert checkpoint_lib.array_checksums({**tree, "a": jnp.asarray(flipped)})["['a']"] \
        != sums["['a']"]


# Bad input and bad disks: one line, exit 2, the workdir as it was.

def _run_main(module: str, argv: list[str], capsys) -> tuple[int, str]:
    """A CLI in this process (no interpreter start): (exit code, stderr)."""
    import importlib
    capsys.readouterr()
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        cli.main_guard(importlib.import_module(f"jaxgen.{module}").main)
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = saved
    return code, capsys.readouterr().err


def _write_idx(directory, train_shape=(8, 8), test_shape=(8, 8), max_label=9, corrupt=False):
    os.makedirs(directory, exist_ok=True)

    def write(name, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(n).to_bytes(4, "big") for n in array.shape)
        payload = gzip.compress(header + array.astype(np.uint8).tobytes())
        if corrupt and "train-images" in name:
            payload = payload[:12] + bytes(b ^ 0x5A for b in payload[12:40]) + payload[40:]
        with open(os.path.join(directory, name), "wb") as f:
            f.write(payload)

    rng = np.random.default_rng(0)
    for split, shape, n in (("train", train_shape, 64), ("t10k", test_shape, 32)):
        write(f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, *shape)))
        write(f"{split}-labels-idx1-ubyte.gz", np.arange(n) % (max_label + 1))
    return str(directory)


@pytest.fixture
def experiment_with(tmp_path):
    def write(body: str) -> str:
        path = tmp_path / "broken_experiment.py"
        path.write_text(body)
        return str(path)
    return write


@pytest.mark.parametrize("case", [
    "sample.num=0", "eval.num_examples=-1", "eval.track_samples=2", "features=(8.5,16)",
    "seed=-1", "idx_test_size", "idx_labels_200", "idx_corrupt_gzip", "syntax_error",
    "name_error", "import_error", "get_config_name_error", "get_config_returns_dict",
    "family=os:getcwd", "family=os:sep", "family=collections:OrderedDict", "workdir_is_file",
    "workdir_under_file",
])
def test_bad_training_input_is_one_line(case, tmp_path, capsys, experiment_with):
    workdir = tmp_path / "run"
    args, expected = [*TINY], ""
    if "=" in case:
        key, value = case.split("=")
        key = {"features": "model.features"}.get(key, key)
        args.append(f"--config.{key}={value}")
        expected = {"features": "expects a tuple of integers"}.get(case.split("=")[0], key)
        if key == "family":  # issue 39: importable, but no family factory
            expected = f"family '{value}' is not a family factory: "
    elif case.startswith("idx"):
        data = _write_idx(tmp_path / "idx", test_shape=(9, 9) if case == "idx_test_size" else
                          (8, 8), max_label=200 if case == "idx_labels_200" else 9,
                          corrupt=case == "idx_corrupt_gzip")
        args += ["--config.data.source=idx", f"--config.data.data_dir={data}"]
        expected = {"idx_test_size": "train images are (8, 8, 1) but test images (9, 9, 1)",
                    "idx_labels_200": "outside the 10 classes",
                    "idx_corrupt_gzip": "cannot read IDX file"}[case]
    elif case.startswith("get_config"):  # issue 39: raised while the config is built
        path = experiment_with(
            "from jaxgen.core import config as config_lib\n\ndef get_config():\n"
            + {"get_config_name_error": "    return default_confg()\n",
               "get_config_returns_dict": "    return {'family': 'vae'}\n"}[case])
        args = [f"--config={path}"]
        expected = {"get_config_name_error": f"{path}:4: NameError: name 'default_confg'",
                    "get_config_returns_dict": "get_config() returned dict"}[case]
    elif case.endswith("_error"):
        body = {"syntax_error": "def get_config(:\n", "name_error": "x = undefined_name\n",
                "import_error": "import no_such_module_here\n"}[case]
        path = experiment_with("# an experiment\n" + body)
        args = [f"--config={path}"]
        expected = f"{path}:2: " + {"syntax_error": "SyntaxError", "name_error": "NameError",
                                    "import_error": "ModuleNotFoundError"}[case]
    elif case == "workdir_is_file":
        workdir.write_text("not a directory")
        expected = "is a file, not a directory"
    elif case == "workdir_under_file":
        (tmp_path / "file").write_text("x")
        workdir = tmp_path / "file" / "run"
        expected = "lies under a file"
    before = tree_snapshot(tmp_path)
    code, err = _run_main("train", [*args, f"--workdir={workdir}"], capsys)
    _one_line_error(err, 2, code, "error: ", expected)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("module, argv, expected", [
    ("sample", ["--num=0"], "--num must be >= 1, got 0"),
    ("sample", ["--num=-4"], "--num must be >= 1, got -4"),
    ("sample", ["--interpolation_steps=0"], "--interpolation_steps must be >= 2"),
    ("sample", ["--attribute=a,b"], "--attribute must be two classes FROM,TO"),
    ("sample", ["--attribute=0,99"], "--attribute=0,99 names a class outside 0..9"),
    ("sample", ["--prompt=a dark 3"], "--prompt: family 'vae' is not text-conditioned"),
    ("evaluate", ["--num_samples=-1"], "eval.num_samples must be >= 0"),
    ("evaluate", ["--num_samples=3"], "eval.num_samples=3 is too few for the sample metrics"),
    ("evaluate", ["--output=../metrics.json"], "--output must be a .json file name"),
    ("evaluate", ["--config.seed=x"], "config key 'seed' expects int"),
])
def test_bad_reader_flags_are_one_line_and_change_nothing(module, argv, expected, straight,
                                                          capsys):
    before = tree_snapshot(straight)
    code, err = _run_main(module, [f"--workdir={straight}", *argv], capsys)
    _one_line_error(err, 2, code, expected)
    assert tree_snapshot(straight) == before


@pytest.mark.parametrize("module", ["train", "sample", "evaluate", "report"])
def test_a_config_json_that_is_not_json_is_one_line(module, tmp_path, straight, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    (workdir / "config.json").write_text('{"family": "vae", "seed": ')
    before = tree_snapshot(workdir)
    argv = [str(tmp_path)] if module == "report" else [f"--workdir={workdir}"]
    code, err = _run_main(module, argv, capsys)
    _one_line_error(err, 2, code, "config.json is not ", "JSON")
    assert tree_snapshot(workdir) == before


def test_report_on_a_malformed_metrics_file_is_one_line(tmp_path, straight, capsys):
    shutil.copytree(straight, tmp_path / "run")
    (tmp_path / "run" / "metrics.json").write_text('{"values": {"fid": "high"}}')
    code, err = _run_main("report", [str(tmp_path)], capsys)
    _one_line_error(err, 2, code, "metrics.json is not an evaluation record")


# Read-only paths and a full disk need a mount (root, as in CI); elsewhere permissions.

@contextlib.contextmanager
def _mount(target, *options: str):
    os.makedirs(target, exist_ok=True)
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")
    try:
        yield str(target)
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextlib.contextmanager
def _read_only(directory):
    """directory, read-only for this process: a read-only bind mount (root ignores
    permissions), else permissions."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        try:
            yield str(directory)
        finally:
            os.chmod(directory, 0o755)
        return
    with _mount(directory, "--bind", str(directory)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
        yield str(directory)


@pytest.mark.parametrize("module", ["train", "sample", "evaluate"])
def test_a_read_only_workdir_is_one_line(module, tmp_path, straight, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(straight, workdir)
    args = [*TINY, f"--config.train.num_steps={STEPS + 10}"] if module == "train" else []
    with _read_only(workdir):
        code, err = _run_main(module, [*args, f"--workdir={workdir}"], capsys)
    _one_line_error(err, 2, code, f"cannot write to workdir {workdir}", "Read-only file system"
                    if os.geteuid() == 0 else "Permission denied")


@pytest.mark.parametrize("cache", ["file", "read_only"])
def test_an_unusable_extractor_cache_is_one_line(cache, tmp_path, straight, capsys,
                                                 monkeypatch):
    root = tmp_path / "cache"
    if cache == "file":
        root.write_text("not a directory")
        context = contextlib.nullcontext()
    else:
        root.mkdir()
        context = _read_only(root)
    with context:
        monkeypatch.setenv("JAXGEN_CACHE", str(root))
        before = tree_snapshot(straight)
        code, err = _run_main("evaluate", [f"--workdir={straight}", *SMALL_EVAL], capsys)
    _one_line_error(err, 2, code, "extractor cache ($JAXGEN_CACHE or eval.extractor_dir)")
    assert tree_snapshot(straight) == before


def test_a_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
    with _mount(tmp_path / "disk", "-t", "tmpfs", "-o", "size=600k", "tmpfs") as disk:
        workdir = os.path.join(disk, "run")
        result = run_cli("train", [*TINY, f"--workdir={workdir}", "--config.train.num_steps=300"])
        last = _one_line_error(result.stderr, 2, result.returncode, "no space left on device",
                               "the last complete checkpoint is step")
        kept = int(last.rsplit("step ", 1)[1])
        assert checkpoint_steps(workdir)[-1] == kept
        assert final_state(workdir)[0] == kept
