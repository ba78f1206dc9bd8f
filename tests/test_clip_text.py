"""The frozen pretrained text encoder (`jaxgen/text/clip.py`): CLIP's BPE tokenizer and text
transformer read from local files, checked against what Hugging Face transformers computed
with the same files (tests/fixtures/clip, written by scripts/make_clip_fixtures.py), and a
text-to-image family conditioned through it."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxgen.core import contract
from jaxgen.training import workdir as workdir_lib
from jaxgen.core.config import ConfigError, load
from jaxgen.data import captions, sources
from jaxgen.engine.restore import build_family
from jaxgen.text.bpe import ClipTokenizer, PretrainedTextError
from jaxgen.text.clip import ClipTextEncoder
from jaxgen.text.saved import from_json, same_vocabulary
from jaxgen.text.tokenizer import TokenizerError
from tests.helpers import ROOT, run_cli

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "clip")


@pytest.fixture(scope="module")
def recorded():
    """prompts, transformers' ids in jaxgen's convention [N, L] (CLIP id + 1, 0 padding), the
    mask, and CLIPTextModel's last_hidden_state [N, L, 32]."""
    with open(os.path.join(FIXTURE, "recorded.json"), encoding="utf-8") as f:
        meta = json.load(f)
    tensors = load_file(os.path.join(FIXTURE, "recorded.safetensors"))
    mask = tensors["attention_mask"].astype(bool)
    return (meta["prompts"], np.where(mask, tensors["input_ids"] + 1, 0), mask,
            tensors["last_hidden_state"])


def test_the_clip_tokenizer_gives_the_ids_of_transformers_in_either_layout(recorded, tmp_path):
    prompts, ids, _, _ = recorded
    fast_only = tmp_path / "fast"
    fast_only.mkdir()
    shutil.copy(os.path.join(FIXTURE, "tokenizer", "tokenizer.json"), fast_only)
    # A pipeline folder, its tokenizer/ (vocab.json + merges.txt), a tokenizer.json alone.
    for folder in (FIXTURE, os.path.join(FIXTURE, "tokenizer"), str(fast_only)):
        tokenizer = ClipTokenizer.read(folder, ids.shape[1])
        np.testing.assert_array_equal(tokenizer.encode_all(prompts), ids, err_msg=folder)
    # The empty prompt is the two markers; text decodes to its normalised words.
    empty = tokenizer.encode("")
    assert list(empty[:3]) == [tokenizer.start_id + 1, tokenizer.end_id + 1, 0]
    assert tokenizer.decode(tokenizer.encode("A  dark Sneaker")) == "a dark sneaker"
    # A workdir's tokenizer.json restores the same tokenizer.
    again = from_json(tokenizer.to_json())
    assert same_vocabulary(again, tokenizer)
    np.testing.assert_array_equal(again.encode_all(prompts), ids)
    with pytest.raises(TokenizerError, match="at most 4"):
        ClipTokenizer.read(FIXTURE, 4).encode("a photo of a dark sneaker")


def test_the_clip_text_encoder_gives_the_hidden_states_of_transformers(recorded, tmp_path):
    prompts, ids, mask, hidden = recorded
    encoder = ClipTextEncoder(FIXTURE)
    embedded, token_mask = jax.jit(encoder.encode)(jnp.asarray(ids))
    np.testing.assert_array_equal(np.asarray(token_mask), mask)
    error = np.abs(np.asarray(embedded) - hidden)[mask].max()
    assert error < 2e-5, error
    # transformers 5 saves the keys without "text_model.", Stable Diffusion's files have it
    # (and a position_ids buffer): both read to the same parameters.
    folder = edited_encoder(tmp_path)
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    prefixed = {f"text_model.{k}": v for k, v in tensors.items()}
    prefixed["text_model.embeddings.position_ids"] = np.arange(32, dtype=np.int64)[None]
    save_file(prefixed, os.path.join(folder, "model.safetensors"))
    jax.tree.map(np.testing.assert_array_equal, ClipTextEncoder(folder).params, encoder.params)
    # Causal: a prompt's embeddings do not depend on how much padding follows it.
    short = int(mask.sum(axis=1).max())
    cut, _ = jax.jit(encoder.encode)(jnp.asarray(ids[:, :short]))
    np.testing.assert_allclose(np.asarray(cut)[mask[:, :short]],
                               np.asarray(embedded)[mask], atol=1e-5)


def edited_encoder(tmp_path, config=None, drop=None):
    folder = tmp_path / "encoder"
    shutil.copytree(os.path.join(FIXTURE, "text_encoder"), folder)
    if config:
        file = folder / "config.json"
        file.write_text(json.dumps({**json.loads(file.read_text()), **config}))
    if drop:
        tensors = load_file(str(folder / "model.safetensors"))
        del tensors[drop]
        save_file(tensors, str(folder / "model.safetensors"))
    return str(folder)


@pytest.mark.parametrize("edit, message", [
    ({"drop": "final_layer_norm.weight"}, r"lacks 1 tensors"),
    ({"config": {"intermediate_size": 48}}, r"mlp\.fc1\.bias' has 64 values .* implies 48"),
    ({"config": {"num_hidden_layers": 1}}, r"'encoder\.layers\.1\..*has no place"),
    ({"config": {"hidden_act": "relu"}}, r"hidden_act 'relu'"),
])
def test_a_text_encoder_that_does_not_match_its_config_is_refused_in_one_line(tmp_path, edit,
                                                                              message):
    with pytest.raises(PretrainedTextError, match=message) as e:
        ClipTextEncoder(edited_encoder(tmp_path, **edit))
    assert "\n" not in str(e.value)


def test_a_folder_without_the_files_is_refused(tmp_path):
    with pytest.raises(PretrainedTextError, match="has no config.json"):
        ClipTextEncoder(str(tmp_path))
    with pytest.raises(PretrainedTextError, match="has no vocab.json"):
        ClipTokenizer.read(str(tmp_path), 8)
    folder = edited_encoder(tmp_path)
    os.remove(os.path.join(folder, "model.safetensors"))
    with pytest.raises(PretrainedTextError, match="safetensors only"):
        ClipTextEncoder(folder)


def frozen_config(**data):
    config = load("experiments/text_digits.py")
    config.data.tokenizer = FIXTURE
    config.data.max_tokens = 24
    config.model.text_encoder = FIXTURE
    config.model.channels, config.model.num_timesteps, config.sample.steps = 16, 100, 5
    config.model.channel_mults, config.model.transformer_resolutions = (1,), (8,)
    for key, value in data.items():
        config.data[key] = value
    return config


def test_a_text_family_trains_through_a_frozen_clip_encoder():
    config = frozen_config()
    splits = sources.from_config(config.data)
    tokenizer = captions.tokenizer_of(splits["train"])
    assert isinstance(tokenizer, ClipTokenizer)
    family = build_family(config, sources.DataSpec.of(splits["train"]))
    batch = {"image": jnp.asarray(splits["train"].images[:8], jnp.float32) / 16.0 * 2 - 1,
             "label": jnp.asarray(splits["train"].labels[:8]),
             "tokens": jnp.asarray(splits["train"].tokens[:8, 0])}
    state = family.init(jax.random.key(0), batch)
    # The encoder's weights are constants of the family, not parameters of the run (a
    # trained encoder's are under "text").
    assert "text" not in state.params and "pooled_text" in state.params, list(state.params)
    trained, metrics = jax.jit(family.train_step)(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    # The cross-attention reads the prompt: another prompt changes the denoiser's output.
    x = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
    index = jnp.full((2,), 50, jnp.int32)
    tokens = jnp.asarray(tokenizer.encode_all(["a dark 3", "a bright 8"]))
    params = jax.tree.map(lambda p: p + 0.05, trained.params)  # the zero-initialised out layers
    out = family.apply(params, x, index, family.prompt_condition(tokens))
    swapped = family.apply(params, x, index, family.prompt_condition(tokens[::-1]))
    assert not np.allclose(out, swapped, atol=1e-4)
    example = contract.example_batch((8, 8, 1), 2, family.data.max_tokens)
    assert jax.eval_shape(family.init, jax.random.key(0), example).params.keys() == \
        state.params.keys()


def test_a_frozen_encoder_needs_its_tokenizer():
    config = frozen_config(tokenizer="words")
    splits = sources.from_config(config.data)
    with pytest.raises(ConfigError, match="set data.tokenizer"):
        build_family(config, sources.DataSpec.of(splits["train"]))


def test_train_and_sample_a_prompt_with_a_frozen_clip_encoder(tmp_path):
    """Through the CLI; the workdir records the encoder's files, and a later command with
    other files is refused."""
    pipeline, workdir = str(tmp_path / "pipeline"), str(tmp_path / "run")
    shutil.copytree(FIXTURE, pipeline)
    result = run_cli("train", [
        "--config=experiments/text_digits.py", f"--workdir={workdir}",
        f"--config.data.tokenizer={pipeline}", f"--config.model.text_encoder={pipeline}",
        "--config.data.max_tokens=24", "--config.model.channels=16",
        "--config.model.channel_mults=(1,)", "--config.model.transformer_resolutions=(8,)",
        "--config.model.num_timesteps=100", "--config.sample.steps=5",
        "--config.train.batch_size=16", "--config.train.num_steps=4",
        "--config.train.log_every_steps=2", "--config.eval.every_steps=0",
        "--config.sample.every_steps=0", "--config.checkpoint.every_steps=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(workdir_lib.read_tokenizer(workdir), ClipTokenizer)
    out = run_cli("sample", [f"--workdir={workdir}", "--prompt=a dark 3", "--prompt=7, small",
                             "--num=2"])
    assert out.returncode == 0, out.stderr[-3000:]
    grids = [f for f in os.listdir(os.path.join(workdir, "samples")) if "prompt" in f]
    assert grids, os.listdir(os.path.join(workdir, "samples"))
    with open(os.path.join(workdir, "frozen_inputs.json"), encoding="utf-8") as f:
        assert set(json.load(f)["model.text_encoder"]["sha256"]) == {"config.json",
                                                                    "model.safetensors"}
    with open(os.path.join(pipeline, "text_encoder", "config.json"), "a") as f:
        f.write("\n")  # other bytes, the same settings: still other files
    out = run_cli("sample", [f"--workdir={workdir}", "--prompt=a dark 3", "--num=2"])
    assert out.returncode != 0
    assert "model.text_encoder: the files in" in out.stderr, out.stderr[-2000:]
