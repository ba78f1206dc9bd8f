"""diffusers folders in and out (`jaxgen.pretrained`), checked against what diffusers computed.

tests/fixtures/diffusers was written by scripts/make_diffusers_fixtures.py (PyTorch and
diffusers, run once by a developer): small random UNet2DModels in three layouts with
diffusers' outputs on fixed inputs, a DDIM loop, and the key -> shape manifest of the full-size
DDPM CIFAR-10 UNet. Here they are read without PyTorch. test_pretrained_live.py repeats the
checks against diffusers itself where it is installed.
"""

import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxgen.cli import common as cli
from jaxgen.core import contract
from jaxgen import pretrained
from jaxgen.engine import runs
from jaxgen.data.sources import DataSpec
from jaxgen.diffusion import schedules
from jaxgen.families import build
from jaxgen.pretrained import configs, unet_keys
from jaxgen.core.state import TrainState
from scripts.make_diffusers_fixtures import DDPM_CIFAR10_PARAMETERS, SPECS, model_path
from tests.helpers import ROOT, TRAINING_ONLY, final_state, run_cli

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "diffusers")

TOLERANCE = 1e-4  # max abs difference in float32


def load(path: str, overrides=()) -> runs.PretrainedModel:
    return runs.load_pretrained(*runs.pretrained_config(path, list(overrides)))


def fixture(name: str) -> str:
    return model_path(os.path.join(FIXTURES, name), SPECS[name])


def recorded(name: str) -> dict[str, np.ndarray]:
    return load_file(os.path.join(FIXTURES, name, "recorded.safetensors"))


def nhwc(x: np.ndarray) -> jax.Array:
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def state_of(params) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(),
                      rng=jnp.zeros((2,), jnp.uint32))


def unet_output(model: runs.PretrainedModel, inputs: dict) -> np.ndarray:
    """The loaded UNet on recorded inputs, in diffusers' layout [B, C, H, W]."""
    network = model.family.model
    labels = inputs.get("class_labels")
    out = network.apply({"params": model.params}, nhwc(inputs["sample"]),
                        jnp.asarray(inputs["timestep"], jnp.int32),
                        None if labels is None else jnp.asarray(labels, jnp.int32))
    return np.asarray(out).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("name", list(SPECS))
def test_an_imported_unet_gives_the_outputs_diffusers_recorded(name):
    model = load(fixture(name))
    inputs = recorded(name)
    error = np.abs(unet_output(model, inputs) - inputs["output"]).max()
    assert error < TOLERANCE, error
    # The outputs are not trivially small: a mismatch would show.
    assert np.abs(inputs["output"]).max() > 0.5


def test_the_settings_map_to_jaxgen_keys():
    attention = load(fixture("ddpm_attention"))
    m, s = attention.config.model, attention.config.sample
    assert (m.channels, tuple(m.channel_mults), m.num_res_blocks) == (8, (1, 2, 2), 1)
    assert tuple(m.attention_resolutions) == (8,) and m.attention_head_dim == 0
    assert (m.downsample_padding, m.flip_sin_to_cos, m.freq_shift) == ("same", False, 1.0)
    assert (m.schedule, m.fixed_variance, m.prediction) == ("linear", "large", "eps")
    assert (s.sampler, s.timestep_spacing, s.clip_x0) == ("ddpm", "leading", True)
    conditional = load(fixture("class_conditional"))
    m, s = conditional.config.model, conditional.config.sample
    assert m.conditional and not m.null_label and conditional.data.num_classes == 5
    assert tuple(m.attention_resolutions) == (8, 2) and m.attention_head_dim == 4
    assert (m.schedule, m.learn_variance, m.prediction) == ("cosine", True, "v")
    assert (s.timestep_spacing, s.clip_x0) == ("trailing", False)
    grey = load(fixture("plain_grey"))
    assert not grey.config.model.mid_attention and grey.data.image_shape == (8, 8, 1)
    assert grey.config.model.downsample_padding == "symmetric"


@pytest.mark.parametrize("name", [n for n in SPECS if SPECS[n]["ddim_steps"]])
def test_jaxgen_ddim_on_an_imported_model_equals_diffusers_ddim_loop(name):
    """Same model, same initial noise: diffusers' DDIMScheduler (eta 0,
    use_clipped_model_output=True) and jaxgen's DDIM end at the same images."""
    inputs = recorded(name)
    steps = SPECS[name]["ddim_steps"]
    model = load(fixture(name), ["sample.sampler=ddim", f"sample.steps={steps}"])
    family = model.family
    from jaxgen.diffusion import samplers
    visited = samplers.timestep_pairs("ddim", 1000, steps, model.config.sample.timestep_spacing)
    np.testing.assert_array_equal(visited[:, 0], inputs["ddim_timesteps"])
    labels = inputs.get("class_labels")
    x, _ = family.trajectory(state_of(model.params), jax.random.key(0), 2,
                             labels=None if labels is None else jnp.asarray(labels[:2],
                                                                            jnp.int32),
                             x_T=nhwc(inputs["ddim_noise"]))
    error = np.abs(np.asarray(x).transpose(0, 3, 1, 2) - inputs["ddim_result"]).max()
    assert error < TOLERANCE, error


def test_every_key_of_the_full_size_ddpm_cifar10_unet_maps_to_ddpm_cifar10():
    with open(os.path.join(FIXTURES, "ddpm_cifar10_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    model, shape, classes = configs.unet_settings(manifest["config"], "manifest")
    from jaxgen.core import config as config_lib
    config = config_lib.load(os.path.join(ROOT, "experiments", "ddpm_cifar10.py"))
    # The experiment is Ho et al.'s network as diffusers has it, bar diffusers' dropout 0.
    for key in ("channels", "channel_mults", "num_res_blocks", "attention_resolutions",
                "num_groups", "norm_eps", "downsample_padding", "flip_sin_to_cos",
                "freq_shift", "attention_head_dim", "mid_attention"):
        assert config.model[key] == model[key], key
    data = DataSpec(shape, classes, 255)
    shapes = jax.eval_shape(build(config, data).init, jax.random.key(0),
                            contract.example_batch(shape)).params
    pairs = unet_keys.leaf_pairs(configs.architecture(config.model, shape[0]), shapes)
    flat = unet_keys.flatten(shapes)
    mapped = {p.torch_key: list(p.torch_shape(flat[p.flax_path].shape)) for p in pairs}
    assert mapped == manifest["shapes"]
    assert sum(int(np.prod(s)) for s in mapped.values()) == DDPM_CIFAR10_PARAMETERS


def test_export_writes_back_the_very_tensors_it_imported(tmp_path):
    model = load(fixture("class_conditional"))
    out = str(tmp_path / "export")
    files = pretrained.export(model.config, model.data, model.params, out)
    assert os.path.join(out, "unet", pretrained.WEIGHTS) in files
    original = load_file(os.path.join(fixture("class_conditional"), pretrained.WEIGHTS))
    written = load_file(os.path.join(out, "unet", pretrained.WEIGHTS))
    assert set(written) == set(original)
    for key, value in original.items():
        np.testing.assert_array_equal(written[key], value, err_msg=key)
    again = load(out)
    assert again.has_data
    assert json.loads(again.config.to_json()) == json.loads(model.config.to_json())
    with open(os.path.join(out, "unet", "config.json"), encoding="utf-8") as f:
        unet = json.load(f)
    with open(os.path.join(fixture("class_conditional"), "config.json"), encoding="utf-8") as f:
        source = json.load(f)
    for key in ("block_out_channels", "down_block_types", "up_block_types", "num_class_embeds",
                "attention_head_dim", "flip_sin_to_cos", "freq_shift", "downsample_padding",
                "norm_eps", "out_channels"):
        assert unet[key] == source[key], key
    with pytest.raises(pretrained.PretrainedError, match="exists and is not an empty folder"):
        pretrained.export(model.config, model.data, model.params, out)


# Bad input: one line naming the problem.

def _copy(name: str, tmp_path) -> str:
    target = str(tmp_path / name)
    shutil.copytree(os.path.join(FIXTURES, name), target)
    return model_path(target, SPECS[name])


def _edit_json(file: str, **changes) -> None:
    tree = {}
    if os.path.exists(file):
        with open(file, encoding="utf-8") as f:
            tree = json.load(f)
    tree.update(changes)
    with open(file, "w", encoding="utf-8") as f:
        json.dump(tree, f)


def _edit_weights(folder: str, edit) -> None:
    file = os.path.join(folder, pretrained.WEIGHTS)
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file)


@pytest.mark.parametrize("case, expected", [
    ("missing", "no folder"),
    ("not_diffusers", "holds neither config.json nor model_index.json"),
    ("other_class", "describes a UNet2DConditionModel; jaxgen reads UNet2DModel folders"),
    ("unknown_setting", "cannot map the UNet setting 'cross_attention_dim'"),
    ("scale_shift", "resnet_time_scale_shift='scale_shift' is not expressible"),
    ("wrong_shape", "tensor 'conv_in.weight' has shape [8, 1, 3, 1], the config implies "
                    "[8, 1, 3, 3]"),
    ("extra_tensor", "cannot map tensor 'down_blocks.0.extra.weight'"),
    ("missing_tensor", "lacks tensor 'conv_out.bias'"),
    ("pickle_only", "diffusion_pytorch_model.bin, a PyTorch pickle"),
    ("scheduler", "beta_schedule='sigmoid' is not supported"),
])
def test_a_folder_jaxgen_cannot_map_is_refused_in_one_line(case, expected, tmp_path):
    folder = _copy("plain_grey", tmp_path)
    config = os.path.join(folder, "config.json")
    if case == "missing":
        folder = str(tmp_path / "nowhere")
    elif case == "not_diffusers":
        os.remove(config)
    elif case == "other_class":
        _edit_json(config, _class_name="UNet2DConditionModel")
    elif case == "unknown_setting":
        _edit_json(config, cross_attention_dim=768)
    elif case == "scale_shift":
        _edit_json(config, resnet_time_scale_shift="scale_shift")
    elif case == "wrong_shape":
        _edit_weights(folder, lambda t: t.update({"conv_in.weight": t["conv_in.weight"][..., :1]}))
    elif case == "extra_tensor":
        _edit_weights(folder, lambda t: t.update({"down_blocks.0.extra.weight": np.zeros(3)}))
    elif case == "missing_tensor":
        _edit_weights(folder, lambda t: t.pop("conv_out.bias"))
    elif case == "pickle_only":
        os.rename(os.path.join(folder, pretrained.WEIGHTS),
                  os.path.join(folder, pretrained.PICKLED_WEIGHTS))
    elif case == "scheduler":
        _edit_json(os.path.join(folder, pretrained.SCHEDULER_CONFIG),
                   _class_name="DDPMScheduler", beta_schedule="sigmoid")
    with pytest.raises(pretrained.PretrainedError) as caught:
        load(folder)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message


@pytest.mark.parametrize("steps", [1000, 250])
def test_stable_diffusions_scaled_linear_schedule_maps_to_the_same_betas(steps):
    """diffusers: betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2, unscaled; jaxgen
    states betas at T = 1000 and scales them by 1000/T. Both directions keep the betas."""
    scheduler = {"_class_name": "DDPMScheduler", "num_train_timesteps": steps,
                 "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    model, _ = configs.scheduler_settings(scheduler, "scheduler_config.json")
    assert model["schedule"] == "scaled_linear"
    diffusers_betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps) ** 2
    ours = schedules.make_schedule("scaled_linear", steps, model["beta_start"],
                                   model["beta_end"])
    np.testing.assert_allclose(np.asarray(ours.betas), diffusers_betas, rtol=1e-6)
    config = ml_collections.ConfigDict({"model": {
        "schedule": "scaled_linear", "num_timesteps": steps, **{
            k: model[k] for k in ("beta_start", "beta_end")}}})
    assert configs.scheduler_betas(config.model) == {
        "beta_schedule": "scaled_linear", "beta_start": pytest.approx(0.00085),
        "beta_end": pytest.approx(0.012)}


def test_old_attention_names_and_a_fused_projection_load_as_today(tmp_path):
    """diffusers < 0.14 saved query/key/value/proj_attn; fuse_qkv_projections makes to_qkv."""
    folder = _copy("ddpm_attention", tmp_path)
    unet_dir = os.path.join(folder, "unet")
    prefix = "down_blocks.1.attentions.0."

    def rename(t):
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"),
                         ("to_out.0", "proj_attn")):
            for leaf in ("weight", "bias"):
                t[f"{prefix}{old}.{leaf}"] = t.pop(f"{prefix}{new}.{leaf}")
        mid = "mid_block.attentions.0."
        for leaf in ("weight", "bias"):
            t[f"{mid}to_qkv.{leaf}"] = np.concatenate(
                [t.pop(f"{mid}{name}.{leaf}") for name in ("to_q", "to_k", "to_v")])
    _edit_weights(unet_dir, rename)
    model = load(folder)
    inputs = recorded("ddpm_attention")
    assert np.abs(unet_output(model, inputs) - inputs["output"]).max() < TOLERANCE


# The command lines.

def test_sample_pretrained_writes_a_grid_and_the_images(tmp_path):
    out = str(tmp_path / "samples")
    result = run_cli("sample", [f"--pretrained={fixture('class_conditional')}", "--num=10",
                                "--sampler=ddim", "--steps=4", f"--out={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    images = np.load(os.path.join(out, "samples.npz"))["images"]
    assert images.shape == (10, 8, 8, 3) and images.dtype == np.uint8
    assert images.std() > 0
    assert os.path.getsize(os.path.join(out, "samples.png")) > 0


@pytest.mark.slow
def test_import_then_export_sample_and_train_a_workdir(tmp_path):
    """import_pretrained -> a workdir at step 0 whose weights are the folder's; export gives
    the folder's tensors back; sample reads the workdir; train fine-tunes it."""
    workdir, out = str(tmp_path / "run"), str(tmp_path / "export")
    data = ["--config.data.source=synthetic", "--config.data.synthetic_shape=(16,16,3)",
            "--config.data.synthetic_size=64"]
    imported = run_cli("import_pretrained", [f"--pretrained={fixture('ddpm_attention')}",
                                             f"--workdir={workdir}", *data,
                                             "--config.train.batch_size=8",
                                             "--config.eval.num_samples=0",
                                             "--config.eval.every_steps=1000",
                                             "--config.eval.vlb_timesteps=10",
                                             "--config.eval.num_examples=16",
                                             "--config.sample.num=4",
                                             "--config.sample.every_steps=1000"])
    assert imported.returncode == 0, imported.stderr[-2000:]
    step, state = final_state(workdir)
    assert step == 0
    source = load(fixture("ddpm_attention"))
    for a, b, c in zip(jax.tree.leaves(source.params), jax.tree.leaves(state["params"]),
                       jax.tree.leaves(state["ema_params"])):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    again = run_cli("import_pretrained", [f"--pretrained={fixture('ddpm_attention')}",
                                          f"--workdir={workdir}", *data])
    assert again.returncode == 2 and "already holds a run" in again.stderr

    exported = run_cli("export", [f"--workdir={workdir}", "--format=diffusers", f"--out={out}"])
    assert exported.returncode == 0, exported.stderr[-2000:]
    written = load_file(os.path.join(out, "unet", pretrained.WEIGHTS))
    original = load_file(os.path.join(fixture("ddpm_attention"), "unet", pretrained.WEIGHTS))
    assert set(written) == set(original)
    for key, value in original.items():
        np.testing.assert_array_equal(written[key], value, err_msg=key)

    sampled = run_cli("sample", [f"--workdir={workdir}", "--num=4", "--sampler=ddim",
                                 "--steps=3"])
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    evaluated = run_cli("evaluate", [f"--workdir={workdir}", "--num_samples=0"])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        bound = json.load(f)["values"]["vlb_bits_per_dim"]
    assert np.isfinite(bound) and bound > 0
    trained = run_cli("train", [f"--workdir={workdir}", "--config.train.num_steps=2",
                                *TRAINING_ONLY])
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "resumed from step 0" in trained.stderr
    step, state = final_state(workdir)
    assert step == 2
    assert not any(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(source.params),
                                                          jax.tree.leaves(state["params"])))


def _one_line_exit(module: str, argv: list[str], capsys) -> str:
    import importlib
    capsys.readouterr()
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        with pytest.raises(SystemExit) as caught:
            cli.main_guard(importlib.import_module(f"jaxgen.{module}").main)
    finally:
        sys.argv = saved
    err = capsys.readouterr().err.strip().splitlines()
    assert caught.value.code == 2 and len(err) == 1, err
    return err[0]


def test_import_without_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    line = _one_line_exit("import_pretrained", [f"--pretrained={fixture('ddpm_attention')}",
                                                f"--workdir={tmp_path / 'run'}"], capsys)
    assert "has no jaxgen_config.json: name the data the model was trained on" in line
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("argv, expected", [
    (["--pretrained=/no/such/model", "--out=OUT"], "no folder '/no/such/model'"),
    (["--pretrained=FIXTURE"], "--pretrained=PATH needs --out=DIR and no --workdir"),
    (["--pretrained=FIXTURE", "--out=OUT", "--config.model.conditional=x"],
     "config key 'model.conditional' expects bool"),
])
def test_sample_pretrained_bad_input_is_one_line(argv, expected, tmp_path, capsys):
    argv = [a.replace("FIXTURE", fixture("plain_grey")).replace("OUT", str(tmp_path / "out"))
            for a in argv]
    assert expected in _one_line_exit("sample", argv, capsys)
    assert not os.path.exists(tmp_path / "out")
