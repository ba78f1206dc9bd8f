"""Training end to end: progress, parallel equivalence, resume, and failure handling."""

import json
import os

import jax
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.core import runtime
from jaxgen.training import trainer
from jaxgen.training.writers import read_metrics
from tests.helpers import (TINY, assert_kill_and_resume_match, final_state, run_cli,
                           start_train_processes, train_tiny, tree_snapshot)


def _assert_same_metrics(rows_a, rows_b, rtol=1e-4):
    assert [(r["step"], r["split"]) for r in rows_a] == [(r["step"], r["split"]) for r in rows_b]
    for a, b in zip(rows_a, rows_b):
        for key in ("loss", "neg_elbo", "recon", "kl"):
            if key in a:
                np.testing.assert_allclose(a[key], b[key], rtol=rtol, err_msg=f"{key} {a['step']}")


def test_training_on_digits_lowers_the_test_neg_elbo(tmp_path):
    flags, overrides = cli.parse(cli.parser(""), [*TINY, f"--workdir={tmp_path}",
                                                  "--config.train.num_steps=400",
                                                  "--config.eval.every_steps=400",
                                                  "--config.eval.num_examples=0"])
    config, splits, family = cli.prepare(flags, overrides)
    before = trainer.Trainer(config, family, splits)
    initial = before.evaluate(before.init_state())["neg_elbo"]
    state = trainer.train(config, str(tmp_path), family, splits)
    final = read_metrics(str(tmp_path), "test")[-1]["neg_elbo"]
    assert int(state.step) == 400
    assert final < initial - 10.0, (initial, final)  # ~44 nats at init on binary 8x8 digits
    assert os.path.isfile(tmp_path / "samples" / "step_0000400.png")
    assert os.path.isfile(tmp_path / "loss_curves.png")


@pytest.mark.slow
def test_eight_devices_give_the_losses_of_one(tmp_path):
    train_tiny(str(tmp_path / "one"), 40, num_devices=1)
    train_tiny(str(tmp_path / "eight"), 40, num_devices=8)
    _assert_same_metrics(read_metrics(str(tmp_path / "one")), read_metrics(str(tmp_path / "eight")))
    _, one = final_state(str(tmp_path / "one"))
    _, eight = final_state(str(tmp_path / "eight"))
    for a, b in zip(jax.tree.leaves(one["params"]), jax.tree.leaves(eight["params"])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one_with_four_devices(tmp_path):
    train_tiny(str(tmp_path / "single"), 30, num_devices=4)
    workdir = str(tmp_path / "multi")
    procs = start_train_processes([*TINY, f"--workdir={workdir}", "--config.train.num_steps=30"])
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    _assert_same_metrics(read_metrics(str(tmp_path / "single")), read_metrics(workdir))
    # Each process fed only its own half of every global batch of 32.
    assert "process 0 of 2 reads rows 0:16" in outputs[0][1]
    assert "process 1 of 2 reads rows 16:32" in outputs[1][1]
    # Only process 0 wrote logs: no line twice, one TensorBoard event file.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = f.readlines()
    assert len(lines) == len(set(lines)) == len(read_metrics(workdir))
    assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 1


@pytest.mark.slow
def test_sigkill_and_restart_end_at_the_uninterrupted_parameters(tmp_path):
    assert_kill_and_resume_match(str(tmp_path), TINY, steps=300, kill_after=60)


def test_nan_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = str(tmp_path)
    result = run_cli("train", [*TINY, f"--workdir={workdir}", "--config.train.num_steps=60",
                               "--config.family=tests.nan_family:NanVAE"])
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite loss") and "at step 26" in last, last
    assert "last good checkpoint: step 20" in last
    assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [10, 20]
    # The workdir names code outside jaxgen: sampling it takes the user's word for it.
    sampled = run_cli("sample", [f"--workdir={workdir}", "--num=4",
                                 "--allow_family=tests.nan_family:NanVAE"])
    assert sampled.returncode == 0, sampled.stderr[-2000:]


def test_a_truncated_checkpoint_is_refused_by_readers_and_set_aside_by_the_trainer(tmp_path):
    workdir = str(tmp_path)
    train_tiny(workdir, 30)
    state_dir = tmp_path / "checkpoints" / "30" / "state"
    for path in state_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name.lower():
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    before = tree_snapshot(tmp_path)
    result = run_cli("evaluate", [f"--workdir={workdir}"])
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: checkpoint 30 in ") and "is damaged" in last, last
    assert tree_snapshot(tmp_path) == before  # a reader changes nothing
    resumed = run_cli("train", [*TINY, f"--workdir={workdir}", "--config.train.num_steps=30"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "checkpoint 30 is unreadable" in resumed.stderr
    assert "resumed from step 20" in resumed.stderr
    assert (tmp_path / "checkpoints_broken" / "30").is_dir()
    assert (tmp_path / "checkpoints" / "30").is_dir()  # trained again


@pytest.mark.parametrize("args, message", [
    (["--config.train.foo=1"], "unknown config key 'train.foo'"),
    (["--config.train.num_steps=abc"], "config key 'train.num_steps' expects int, got 'abc'"),
    (["--config.train.batch_size=30"], "train.batch_size=30 is not divisible by the 8 devices"),
    (["--config.data.source=idx", "--config.data.data_dir=/nonexistent"], "no IDX files"),
    (["--config=experiments/nope.py"], "config file not found: experiments/nope.py"),
])
def test_bad_input_is_one_line_and_touches_no_workdir(tmp_path, args, message):
    workdir = tmp_path / "run"
    result = run_cli("train", [*TINY, f"--workdir={workdir}", *args], num_devices=8)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert not workdir.exists()


def test_a_workdir_refuses_a_config_that_changes_the_model(tmp_path):
    train_tiny(str(tmp_path), 10)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("train", [*TINY, f"--workdir={tmp_path}", "--config.train.num_steps=20",
                               "--config.model.latent_dim=5"])
    assert result.returncode == 2
    assert "model.latent_dim=4" in result.stderr and "use a new workdir" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow
def test_sample_and_evaluate_write_their_outputs(tmp_path):
    train_tiny(str(tmp_path), 20)
    sampled = run_cli("sample", [f"--workdir={tmp_path}", "--num=9", "--interpolation_steps=5"])
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    for name in ("sample_grid", "interpolation", "attribute_0_to_1"):
        assert (tmp_path / "samples" / f"{name}_step_0000020.png").is_file()
    evaluated = run_cli("evaluate", [f"--workdir={tmp_path}", "--num_examples=64"])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    values = json.load(open(tmp_path / "metrics.json"))["values"]
    assert values["iwae_nll"] <= values["neg_elbo"] + 1.0
    assert values["neg_elbo_bits_per_dim"] > 0 and "pca_recon_mse_per_pixel" in values


def test_a_checkpoint_from_before_a_new_state_field_restores_it_as_none(tmp_path):
    import flax
    import jax.numpy as jnp

    from jaxgen.training.checkpoint import Checkpointer
    from jaxgen.core.state import TrainState

    @flax.struct.dataclass
    class EarlierTrainState:  # TrainState before model_state existed
        step: jax.Array
        params: dict
        opt_state: tuple
        rng: jax.Array
        ema_params: dict

    params = {"w": jnp.arange(3.0)}
    saved = Checkpointer(str(tmp_path / "checkpoints"), 2)
    saved.save(5, EarlierTrainState(jnp.int32(5), params, (jnp.ones(2),), jnp.zeros(2, jnp.uint32),
                                    params), {"step": 5})
    saved.wait()
    saved.close()
    target = TrainState(jnp.int32(0), {"w": jnp.zeros(3)}, (jnp.zeros(2),),
                        jnp.zeros(2, jnp.uint32), {"w": jnp.zeros(3)})
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), 2)
    state, position = checkpointer.restore_latest(target)
    assert int(state.step) == 5 and position == {"step": 5} and state.model_state is None
    np.testing.assert_array_equal(state.params["w"], [0.0, 1.0, 2.0])

    # Another tree (a renamed parameter): an error, and the checkpoint stays where it is.
    other = target.replace(params={"v": jnp.zeros(3)}, ema_params={"v": jnp.zeros(3)})
    with pytest.raises(Exception, match="holds another train-state tree"):
        checkpointer.restore_latest(other)
    checkpointer.close()
    assert (tmp_path / "checkpoints" / "5").is_dir()
    assert not (tmp_path / "checkpoints_broken").exists()


@pytest.mark.parametrize("experiment", ["vae_digits", "gan_digits"])
def test_the_fast_compiled_initialisation_gives_the_default_levels_weights(experiment):
    # The trainer compiles its init at a lower XLA optimisation level (cold starts): the
    # weights must be those of the default level bit for bit, or every published figure
    # trained from scratch would reproduce only within noise (benchmarks/init_compile.py
    # checks every shipped experiment at full size).
    import functools

    from jaxgen.core import contract
    from jaxgen.core.rng import root_key_data
    small = {"vae_digits": ["model.features=(8,16)", "model.hidden=32"],
             "gan_digits": []}[experiment]
    flags, overrides = cli.parse(cli.parser(""), [f"--config=experiments/{experiment}.py",
                                                  "--workdir=/nonexistent"])
    config, splits, family = cli.prepare(flags, [*overrides, *small])
    t = trainer.Trainer(config, family, splits)
    batch, key = t.global_batch(t.stream.batch_at(0)), root_key_data(config.seed)
    assert runtime.init_compiler_options(t.mesh) == runtime.INIT_COMPILER_OPTIONS  # on CPU
    default = jax.jit(functools.partial(contract.initial_state, family, ema=t.ema))(key, batch)
    fast = t.init_fn(key, batch)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(fast), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
