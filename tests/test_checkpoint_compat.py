"""Workdirs written before the families/ layout (commit 80433ef) restore and continue.

tests/fixtures/pre_families holds two such runs, 60 steps each, as that code wrote them: a VAE
with an EMA of all its parameters and a GAN (spectral norm, R1) whose EMA then covered both
networks; the GAN's EMA now covers the generator only."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import ROOT, SMALL_EVAL, final_state, run_cli

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "pre_families")


def _as_written(run: str) -> dict:
    """The fixture's state tree exactly as saved, restored without a target."""
    directory = os.path.join(FIXTURES, run, "checkpoints", "60", "state")
    return ocp.StandardCheckpointer().restore(directory)


def _copy(run: str, tmp_path) -> str:
    workdir = str(tmp_path / run)
    shutil.copytree(os.path.join(FIXTURES, run), workdir)
    return workdir


@pytest.mark.slow
def test_an_older_gan_workdir_samples_and_continues_with_the_generator_ema_only(tmp_path):
    from jaxgen.cli.common import parse, parser, restore

    workdir = _copy("gan", tmp_path)
    flags, overrides = parse(parser(""), [f"--workdir={workdir}"])
    _, _, family, _, state = restore(flags, overrides)
    saved = _as_written("gan")
    assert set(saved["ema_params"]) == {"generator", "discriminator"}
    assert set(state.ema_params) == {"generator"}
    for a, b in zip(jax.tree.leaves(saved["ema_params"]["generator"]),
                    jax.tree.leaves(state.ema_params["generator"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(saved["params"]), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    # Sampling uses the averaged generator beside the current discriminator.
    sampling = state.params_for_sampling()
    assert sampling["generator"] is state.ema_params["generator"]
    assert sampling["discriminator"] is state.params["discriminator"]

    sampled = run_cli("sample", [f"--workdir={workdir}", "--num=4",
                                 "--config.eval.extractor_steps=500"])
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    resumed = run_cli("train", [f"--workdir={workdir}", "--config.train.num_steps=70",
                                "--config.eval.every_steps=0", "--config.sample.every_steps=0"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step 60" in resumed.stderr
    step, continued = final_state(workdir)
    assert step == 70 and set(continued["ema_params"]) == {"generator"}


def test_an_older_vae_workdir_restores_every_leaf_and_evaluates(tmp_path):
    from jaxgen.cli.common import parse, parser, restore

    workdir = _copy("vae", tmp_path)
    flags, overrides = parse(parser(""), [f"--workdir={workdir}"])
    _, _, _, _, state = restore(flags, overrides)
    saved = _as_written("vae")
    for field in ("params", "opt_state", "ema_params"):
        leaves = jax.tree.leaves(saved[field])
        assert len(leaves) == len(jax.tree.leaves(getattr(state, field))) > 0
        for a, b in zip(leaves, jax.tree.leaves(getattr(state, field))):
            np.testing.assert_array_equal(a, b)
    evaluated = run_cli("evaluate", [f"--workdir={workdir}", "--num_samples=64",
                                     "--config.eval.iwae_samples=10",
                                     "--config.eval.iwae_chunk=5", *SMALL_EVAL[1:]])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]


def test_keys_declared_after_a_workdir_was_written_take_the_values_their_absence_implies():
    import json

    import ml_collections

    from jaxgen import families
    from jaxgen.families import diffusion
    with open(os.path.join(FIXTURES, "vae", "config.json")) as f:
        vae = json.load(f)
    assert "min_log_variance" not in vae["model"]
    completed = families.complete(ml_collections.ConfigDict(vae))
    # The floor became a key later (default -10); a run saved before it trained with -6.
    assert completed.model.min_log_variance == -6.0
    old_diffusion = diffusion.default_config().to_dict()
    del old_diffusion["model"]["learn_variance"], old_diffusion["model"]["vlb_weight"]
    completed = families.complete(ml_collections.ConfigDict(old_diffusion))
    assert completed.model.learn_variance is False and completed.model.vlb_weight == 0.001


def test_a_reader_lists_again_when_a_checkpoint_vanishes_while_it_opens(tmp_path, monkeypatch):
    """A trainer's max_to_keep can delete a checkpoint between Orbax listing the directory and
    reading that checkpoint's time; the reader opens again instead of failing."""
    from jaxgen.training import checkpoint

    (tmp_path / "checkpoints").mkdir()
    real = checkpoint.ocp.CheckpointManager
    calls = []

    def vanishing_once_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise FileNotFoundError(2, "No such file or directory", "checkpoints/45")
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", vanishing_once_twice)
    reader = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), 3, read_only=True)
    assert len(calls) == 3 and reader.latest_step() is None
    reader.close()
