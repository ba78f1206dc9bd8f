"""The Python API (`jaxgen.load_config`, `jaxgen.train`, `jaxgen.load`, `jaxgen.Model`)."""

import numpy as np
import pytest

import jaxgen
import jaxgen.cli.train  # the CLI module (python -m jaxgen.train): jaxgen.train must still train
from jaxgen.core.config import ConfigError
from tests.helpers import TINY


def tiny_overrides(**extra) -> dict:
    # The command-line TINY config as a dict: "--config.KEY=VALUE" -> {KEY: VALUE}.
    pairs = dict(a[len("--config."):].split("=", 1) for a in TINY if a.startswith("--config."))
    return {**pairs, "eval.num_samples": 0, **extra}


def test_the_api_trains_samples_evaluates_and_encodes_in_process(tmp_path):
    config = jaxgen.load_config("experiments/vae_digits.py",
                                tiny_overrides(**{"train.num_steps": 20}))
    assert config.train.num_steps == 20 and config.model.features == (8, 16)
    model = jaxgen.train(config, str(tmp_path))
    assert int(model.state.step) == 20
    assert (tmp_path / "checkpoints" / "20").is_dir()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tensors = events.Tags()["tensors"]
    assert any(tag.startswith("config") for tag in tensors)  # the config text
    assert "_hparams_/session_start_info" in tensors  # the HParams tab
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.num_steps"].number_value == 20
    assert hparams["model.features"].string_value == "[8, 16]"

    images = model.sample(6)
    assert images.shape == (6, 8, 8, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, model.sample(6))  # same seed, same draw
    assert not np.array_equal(images, model.sample(6, seed=1))

    loaded = jaxgen.load(str(tmp_path))
    np.testing.assert_array_equal(loaded.sample(6), images)

    codes = loaded.encode(images)
    assert codes.shape == (6, 4)
    assert loaded.decode(codes).shape == (6, 8, 8, 1)

    record = loaded.evaluate(num_examples=64)
    assert record["step"] == 20 and np.isfinite(record["values"]["neg_elbo"])
    assert (tmp_path / "metrics.json").is_file()

    with pytest.raises(ConfigError, match="unknown config key 'train.num_stepz'"):
        jaxgen.load_config("experiments/vae_digits.py", {"train.num_stepz": 1})


def test_jaxgen_exports_the_api_without_importing_it_up_front():
    assert {"load_config", "train", "load", "Model"} <= set(dir(jaxgen))
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        jaxgen.trian
