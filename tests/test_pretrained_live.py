"""The checks of test_pretrained.py against diffusers itself, where PyTorch and diffusers are
installed (pip install -e .[interop]); CI has neither and skips this module, and
test_pretrained.py covers the same ground with outputs diffusers recorded.

Fresh random models of every fixture spec, imported and compared live; and jaxgen's own UNets
(its defaults, class-conditional with the null label, learned variances), exported and loaded by
`UNet2DModel.from_pretrained` and `DDPMPipeline.from_pretrained`.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from jaxgen import pretrained  # noqa: E402
from jaxgen.data.sources import DataSpec  # noqa: E402
from jaxgen.families import build, diffusion  # noqa: E402
from tests.test_pretrained import TOLERANCE, load, nhwc, state_of, unet_output  # noqa: E402
from scripts import make_diffusers_fixtures as fixtures  # noqa: E402


@pytest.mark.parametrize("name", list(fixtures.SPECS))
def test_a_fresh_diffusers_unet_imports_with_diffusers_outputs(name, tmp_path):
    spec = fixtures.SPECS[name]
    unet = fixtures.random_unet(spec["unet"], seed=100)
    fixtures.save(unet, spec, str(tmp_path))
    inputs = fixtures.record(unet, spec, seed=200)
    model = load(fixtures.model_path(str(tmp_path), spec))
    assert np.abs(unet_output(model, inputs) - inputs["output"]).max() < TOLERANCE
    if spec["ddim_steps"]:
        steps = spec["ddim_steps"]
        model = load(fixtures.model_path(str(tmp_path), spec),
                                ["sample.sampler=ddim", f"sample.steps={steps}"])
        labels = inputs.get("class_labels")
        x, _ = model.family.trajectory(
            state_of(model.params), jax.random.key(0), 2,
            labels=None if labels is None else jnp.asarray(labels[:2], jnp.int32),
            x_T=nhwc(inputs["ddim_noise"]))
        error = np.abs(np.asarray(x).transpose(0, 3, 1, 2) - inputs["ddim_result"]).max()
        assert error < TOLERANCE, error


JAXGEN_UNETS = {
    # jaxgen's own defaults (DDPM's embedding, XLA's padding, one head), small.
    "defaults": {"model.channels": 8, "model.channel_mults": (1, 2), "model.num_groups": 4,
                 "model.attention_resolutions": (8,)},
    # Class-conditional with the null label, learned variances, heads of 4, symmetric padding.
    "conditional": {"model.channels": 8, "model.channel_mults": (1, 1, 2),
                    "model.num_groups": 4, "model.attention_resolutions": (4,),
                    "model.conditional": True, "model.label_dropout": 0.1,
                    "model.learn_variance": True, "model.attention_head_dim": 4,
                    "model.downsample_padding": "symmetric", "model.flip_sin_to_cos": True,
                    "model.freq_shift": 0.0, "model.schedule": "linear",
                    "model.num_timesteps": 500},
}


@pytest.mark.parametrize("name", list(JAXGEN_UNETS))
def test_a_jaxgen_export_loads_in_diffusers_with_jaxgen_outputs(name, tmp_path):
    config = diffusion.default_config()
    for key, value in JAXGEN_UNETS[name].items():
        section, leaf = key.split(".")
        config[section][leaf] = value
    data = DataSpec((16, 16, 3), 10, 255)
    family = build(config, data)
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
    t = jnp.asarray([0, 250, 499])
    labels = jnp.asarray([0, 9, 10]) if config.model.conditional else None  # 10: the null label
    params = family.model.init(jax.random.key(0), x, t, labels)["params"]
    # Every parameter away from its initialiser (the output layer starts at zero).
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape)
                                       for p, k in zip(leaves, keys)])
    out = str(tmp_path / "export")
    pretrained.export(config, data, params, out)

    unet = diffusers.UNet2DModel.from_pretrained(out, subfolder="unet").eval()
    with torch.no_grad():
        theirs = unet(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()),
                      torch.from_numpy(np.array(t)),
                      class_labels=None if labels is None else torch.from_numpy(
                          np.asarray(labels).astype(np.int64))).sample.numpy()
    ours = np.asarray(family.model.apply({"params": params}, x, t, labels))
    assert np.abs(ours.transpose(0, 3, 1, 2) - theirs).max() < TOLERANCE

    pipeline = diffusers.DDPMPipeline.from_pretrained(out)
    expected = np.asarray(family.schedule.alpha_bar)
    np.testing.assert_allclose(pipeline.scheduler.alphas_cumprod.numpy(), expected, rtol=1e-4,
                               atol=1e-6)
    variance = pipeline.scheduler.config.variance_type
    assert variance == ("learned_range" if config.model.learn_variance else "fixed_small")
