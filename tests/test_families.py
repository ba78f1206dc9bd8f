"""Each VAE/AE variant trains, the EMA option averages, latent tools behave."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.cli import common as cli
from jaxgen.core import config as config_lib, state as state_lib
from jaxgen.pictures import latent
from jaxgen.training import trainer
from jaxgen.core.config import ConfigError
from tests.helpers import TINY, run_cli, train_tiny


def _prepare(tmp_path, *extra, base=TINY):
    flags, overrides = cli.parse(cli.parser(""), [*base, f"--workdir={tmp_path}", *extra])
    return cli.prepare(flags, overrides)


# The AE's config has its own model and eval keys: its experiment, made tiny, on digits.
TINY_AE = ["--config=experiments/ae_fashion_mnist.py", "--config.data.source=digits",
           "--config.data.name=", "--config.model.latent_dim=4", "--config.model.features=(8,16)",
           "--config.model.hidden=32", "--config.train.batch_size=32",
           "--config.eval.batch_size=64"]


@pytest.mark.parametrize("extra", [
    ("--config=experiments/vae_digits.py:gaussian_fixed", "--config.data.binarize=False",
     "--config.data.dequantize=True"),
    ("--config=experiments/vae_digits.py:gaussian_learned", "--config.data.binarize=False",
     "--config.data.dequantize=True"),
    ("--config.model.conditional=True",),
    ("--config.model.beta=4.0",),
    ("--config.model.loss=bce",),
    ("--config.model.loss=mse",),
], ids=["gaussian_fixed", "gaussian_learned", "conditional", "beta4", "ae_bce", "ae_mse"])
def test_variant_trains(tmp_path, extra):
    base = TINY_AE if extra[0].startswith("--config.model.loss") else TINY
    config, splits, family = _prepare(tmp_path, *extra, base=base)
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    losses = []
    for step in range(120):
        state, metrics = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 1.0
    images = t.sample_images(state, 10)
    assert images.shape == (10, 8, 8, 1) and 0.0 <= images.min() and images.max() <= 1.0


def test_conditional_samples_follow_their_labels(tmp_path):
    config, splits, family = _prepare(tmp_path, "--config.model.conditional=True")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    z = jnp.zeros((2, family.latent_dim))
    a = family.decode(state.params, z, jnp.array([0, 0]))
    b = family.decode(state.params, z, jnp.array([0, 7]))
    np.testing.assert_allclose(a[0], b[0])
    assert not np.allclose(a[1], b[1])


def test_ema_is_the_running_average_of_parameters(tmp_path):
    config, splits, family = _prepare(tmp_path, "--config.train.ema_decay=0.9")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    initial = jax.tree.map(np.asarray, state.params)
    expected = initial
    for step in range(3):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
        expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * np.asarray(p), expected, state.params)
    for got, want in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, b) for a, b in
                   zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params)))


def test_ema_warmup_follows_tf_num_updates_schedule(tmp_path):
    config, splits, family = _prepare(tmp_path, "--config.train.ema_decay=0.9",
                                      "--config.train.ema_warmup=True")
    t = trainer.Trainer(config, family, splits)
    state = t.init_state()
    expected = jax.tree.map(np.asarray, state.params)
    for step in range(3):
        state, _ = t.step_fn(state, t.global_batch(t.stream.batch_at(step)))
        decay = min(0.9, (2.0 + step) / (11.0 + step))  # (1 + t) / (10 + t) after update t
        expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * np.asarray(p),
                                expected, state.params)
    for got, want in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert float(state_lib.ema_decay_at(0.999, jnp.asarray(8990), True)) == np.float32(0.999)
    assert float(state_lib.ema_decay_at(0.999, jnp.asarray(80), True)) == np.float32(0.9)


def test_ema_warmup_without_an_ema_is_an_error():
    config = config_lib.load("experiments/vae_digits.py", ["train.ema_warmup=True"])
    with pytest.raises(ConfigError, match="train.ema_decay=0 keeps none"):
        config_lib.validate(config, num_devices=1, num_processes=1)


def test_slerp_keeps_norm_and_endpoints():
    a, b = jnp.array([3.0, 0.0]), jnp.array([0.0, 3.0])
    path = latent.slerp(a, b, jnp.linspace(0, 1, 5))
    np.testing.assert_allclose(jnp.linalg.norm(path, axis=-1), 3.0, rtol=1e-5)
    np.testing.assert_allclose(path[0], a, atol=1e-6)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    np.testing.assert_allclose(latent.lerp(a, b, jnp.array([0.5]))[0], [1.5, 1.5])


def test_pca_baseline_is_exact_at_full_rank():
    rng = np.random.default_rng(0)
    x = rng.random((50, 2, 2, 1)).astype(np.float32)
    assert latent.pca_reconstruction_mse(x, x, 4) < 1e-10
    assert latent.pca_reconstruction_mse(x, x, 1) > 1e-3


@pytest.mark.slow
def test_two_dimensional_latent_gets_a_scatter_plot(tmp_path):
    train_tiny(str(tmp_path), 20, "--config.model.latent_dim=2")
    result = run_cli("sample", [f"--workdir={tmp_path}", "--num=4"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "samples" / "latent_scatter_step_0000020.png").is_file()


def test_a_conditional_sample_grid_puts_class_k_in_column_k():
    from jaxgen.pictures import viz
    from jaxgen.core.contract import FamilyBase

    class Conditional(FamilyBase):
        num_classes = 10
    family = Conditional()
    labels = np.asarray(family.cycled_labels(64))  # the labels a sampler given none draws
    images = np.broadcast_to(labels[:, None, None, None], (64, 3, 3, 1)).astype(np.uint8)
    mosaic = viz.sample_grid(images, family.sampling_classes)
    assert mosaic.shape == (7 * 4 + 1, 10 * 4 + 1, 1)
    for k in range(10):
        column = mosaic[1:, 1 + 4 * k:4 * k + 4, 0].reshape(7, 4, 3)[:, :3]
        filled = column[:7 if k < 4 else 6]  # 64 samples: classes 4..9 have 6 rows
        assert np.all(filled == k), k


def test_loss_curves_show_the_test_loss_and_the_tracked_sample_metrics(tmp_path):
    from jaxgen.pictures import viz
    rows = [{"split": "train", "step": s, "loss": 1.0 / s} for s in (10, 20, 30)]
    rows += [{"split": "test", "step": s, "loss": 1.2 / s, "fid": 50.0 / s, "recall": s / 40}
             for s in (15, 30)]
    drawn = viz.curves(str(tmp_path / "curves.png"), rows, ["loss"])
    assert drawn == {"loss": ["train loss", "test loss"], "fid (tracked samples)": ["fid"],
                     "recall (tracked samples)": ["recall"]}
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_pictures_carry_their_labels_in_margins_beside_the_unchanged_image(tmp_path):
    from PIL import Image

    from jaxgen.pictures import viz
    image = np.full((40, 60, 1), 128, np.uint8)
    out = viz.labelled(image, title="step 10, guidance 2.0", row_labels=["linear", "spherical"],
                       column_labels=["0", "0.5", "1"])
    top, left = out.shape[0] - 40, out.shape[1] - 60
    assert top > 0 and left > 0 and out.shape[2] == 1
    np.testing.assert_array_equal(out[top:, left:], image)  # the picture itself untouched
    assert out[:top].min() < 100 and out[top:, :left].min() < 100  # text in both margins
    viz.save_png(str(tmp_path / "x.png"), image, title="t", row_labels=["a"])
    assert Image.open(tmp_path / "x.png").size[1] > 256  # enlarged, then the title above


def test_class_names_label_the_columns_of_a_grid_widened_to_fit_them(tmp_path):
    from PIL import Image

    from jaxgen.pictures import viz
    from jaxgen.data.sources import FASHION_MNIST_CLASSES
    image = np.full((29 * 7 + 1, 29 * 10 + 1, 1), 128, np.uint8)  # 7 rows of 10 classes
    viz.save_png(str(tmp_path / "grid.png"), image, column_labels=FASHION_MNIST_CLASSES)
    widest = max(viz._text_width(name) for name in FASHION_MNIST_CLASSES)
    assert Image.open(tmp_path / "grid.png").size[0] >= 10 * (widest + 6)


def test_a_montage_shows_the_sample_grids_over_training(tmp_path):
    from PIL import Image

    from jaxgen.pictures import viz
    from jaxgen.training import pictures as training_pictures
    samples = tmp_path / "samples"
    for step in (100, 200, 300):
        viz.save_png(str(samples / f"step_{step:07d}.png"), np.full((8, 8, 1), step // 2,
                                                                     np.uint8))
    training_pictures.write_montage(str(tmp_path))
    montage = np.asarray(Image.open(samples / "montage.png"))
    assert montage.shape[1] >= 3 * 256  # three grids side by side, each 256 px high
    assert {50, 100, 150} <= set(np.unique(montage))  # each grid's pixels are in it
