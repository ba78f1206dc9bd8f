"""CycleGAN: the folder source, two-domain data, the history pool, the objective, training,
translation pictures and the translate CLI."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgen.families import image_pool
from jaxgen.core import config_keys
from jaxgen.core.config import ConfigError, load
from jaxgen.data import sources
from jaxgen.data.pipeline import TrainStream, eval_batches
from jaxgen.data.sources import DatasetError, load_folder
from jaxgen.families import build
from jaxgen.losses import gan as gan_losses
from jaxgen.core.runtime import INIT_COMPILER_OPTIONS
from jaxgen.models.cyclegan import PatchDiscriminator, ResnetGenerator, receptive_field
from jaxgen.core.state import learning_rate_schedule
from tests.helpers import (SMALL_EVAL, assert_resumes_exactly_on_any_device_count, final_state,
                           run_cli)

TINY_CG = [
    "--config=experiments/cyclegan_digits.py", "--config.model.generator_width=4",
    "--config.model.generator_blocks=1", "--config.model.discriminator_widths=(4,8)",
    "--config.model.pool_size=8", "--config.train.batch_size=16",
    "--config.train.log_every_steps=10", "--config.checkpoint.every_steps=10",
    "--config.eval.every_steps=1000", "--config.sample.every_steps=1000",
    "--config.eval.num_examples=64",
]


def write_image(path, size, mode="RGB", value=None, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(abs(hash(path)) % 2**32)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(
        shape, value, np.uint8)
    Image.fromarray(pixels, mode).save(path, format=fmt)


@pytest.fixture
def class_folders(tmp_path):
    """train/ and test/ with class folders "cat" and "dog", PNG and JPEG files of several
    sizes and modes, and a text file that is not an image."""
    root = tmp_path / "pets"
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(count):
                write_image(str(root / split / name / f"{i}.png"), (20 + i, 16), "RGB")
            write_image(str(root / split / name / "extra.JPG"), (32, 24), "L", fmt="JPEG")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return str(root)


def test_the_folder_source_reads_class_folders_resizes_and_converts(class_folders):
    splits = load_folder(class_folders, image_size=12, channels=3)
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (8, 12, 12, 3) and test.images.shape == (6, 12, 12, 3)
    assert train.class_names == ("cat", "dog") and train.num_classes == 2
    assert train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    gray = load_folder(class_folders, image_size=8, channels=1)["train"]
    assert gray.images.shape == (8, 8, 8, 1) and gray.images.dtype == np.uint8
    # A grayscale JPEG read as RGB has three equal channels.
    jpeg = splits["train"].images[3]
    np.testing.assert_array_equal(jpeg[..., 0], jpeg[..., 2])


def test_the_folder_source_centre_crops_the_resized_shorter_side(tmp_path):
    path = str(tmp_path / "one" / "wide.png")
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, 10:20] = 255  # the centre third is white: the crop keeps exactly it
    os.makedirs(os.path.dirname(path))
    Image.fromarray(pixels).save(path)
    write_image(str(tmp_path / "one" / "other.png"), (30, 10), value=0)
    images = load_folder(str(tmp_path / "one"), image_size=10, test_fraction=0.5)
    both = np.concatenate([images["train"].images, images["test"].images])
    assert both.shape[1:] == (10, 10, 3)
    assert sorted(both.min(axis=(1, 2, 3)).tolist()) == [0, 255]  # the white centre, all


def test_a_folder_without_splits_is_split_by_a_fixed_seed(tmp_path):
    for i in range(20):
        write_image(str(tmp_path / "flat" / f"{i:02d}.png"), (8, 8), value=i)
    first = load_folder(str(tmp_path / "flat"), test_fraction=0.25)
    again = load_folder(str(tmp_path / "flat"), test_fraction=0.25)
    assert len(first["test"]) == 5 and len(first["train"]) == 15
    np.testing.assert_array_equal(first["test"].images, again["test"].images)
    values = set(first["test"].images[:, 0, 0, 0]) | set(first["train"].images[:, 0, 0, 0])
    assert values == set(range(20))  # disjoint and complete
    assert first["train"].num_classes == 1 and first["train"].class_names == ()


def test_a_corrupt_file_is_named_or_skipped_and_sizes_must_agree(class_folders):
    bad = os.path.join(class_folders, "train", "dog", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match="broken.png"):
        load_folder(class_folders, image_size=8)
    skipped = load_folder(class_folders, image_size=8, on_bad_file="skip")
    assert len(skipped["train"]) == 8
    os.remove(bad)
    with pytest.raises(DatasetError, match="data.image_size"):
        load_folder(class_folders, image_size=0)
    with pytest.raises(DatasetError, match="does not exist"):
        load_folder(class_folders + "_missing")


def test_a_folder_dataset_through_the_config(class_folders):
    config = load("experiments/gan_digits.py", ["data.source=folder",
                                                f"data.data_dir={class_folders}",
                                                "data.image_size=16", "data.channels=1"])
    splits = sources.from_config(config.data)
    assert splits["train"].images.shape == (8, 16, 16, 1)
    config.data.data_dir = ""
    with pytest.raises(DatasetError, match="data.data_dir"):
        sources.from_config(config.data)


def test_a_tfds_domain_reads_its_own_splits_and_resizes(tmp_path):
    """cycle_gan/horse2zebra's domains are the splits trainA/testA and trainB/testB; tfds'
    mock images come in random sizes, as real datasets may."""
    import tensorflow_datasets as tfds

    config = load("experiments/cyclegan_digits.py")
    for domain, letter in ((config.data.domain_a, "A"), (config.data.domain_b, "B")):
        domain.source, domain.name = "tfds", "cycle_gan/horse2zebra"
        domain.tfds_splits, domain.image_size = (f"train{letter}", f"test{letter}"), 16
        domain.part = (0, 1)
    config.data.domain_b.transform = "none"
    with tfds.testing.mock_data(num_examples=6):
        splits = sources.from_config(config.data)
        assert splits["train"].images.shape == splits["test"].domain_b.images.shape == (
            6, 16, 16, 3)
        config.data.domain_a.image_size = 0
        with pytest.raises(DatasetError, match="several sizes: set data.image_size"):
            sources.from_config(config.data)
    digits = load("experiments/gan_digits.py", ["data.image_size=12"])
    assert sources.from_config(digits.data)["test"].images.shape[1:] == (12, 12, 1)


def test_classes_parts_and_transforms_of_a_dataset():
    config = load("experiments/gan_digits.py")
    whole = sources.from_config(config.data)
    config.data.classes = (3, 5)
    some = sources.from_config(config.data)
    assert set(some["train"].labels.tolist()) == {3, 5}
    assert some["train"].num_classes == 10  # ids kept for the whole dataset's classifier
    config.data.classes, config.data.part = (), (1, 2)
    half = sources.from_config(config.data)["train"]
    config.data.part = (0, 2)
    other = sources.from_config(config.data)["train"]
    assert len(half) + len(other) == len(whole["train"])
    rows = {x.tobytes() for x in other.images}
    assert not any(x.tobytes() in rows for x in half.images[:200])
    config.data.part, config.data.transform = (0, 1), "invert"
    inverted = sources.from_config(config.data)["train"]
    np.testing.assert_array_equal(inverted.images, 16 - whole["train"].images)
    for kind in config_keys.TRANSFORMS[1:]:
        x = whole["train"].images[:4]
        back = sources.transform(sources.transform(x, kind, 16), kind, 16, inverse=True)
        np.testing.assert_array_equal(back, x)
    config.data.classes = (12,)
    with pytest.raises(DatasetError, match="class 12 does not exist"):
        sources.from_config(config.data)


def test_two_domains_come_unpaired_and_of_one_shape():
    config = load("experiments/cyclegan_digits.py")
    splits = sources.from_config(config.data)
    train = splits["train"]
    assert len(train) + len(train.domain_b) == 1797 - len(splits["test"]) - len(
        splits["test"].domain_b)
    stream = TrainStream(train, 16, seed=0, rows=slice(None), value_range="symmetric")
    batch = stream.batch_at(3)
    assert batch["image"].shape == batch["image_b"].shape == (16, 8, 8, 1)
    assert batch["image_b"].mean() > 0.3 > batch["image"].mean()  # B is inverted
    # B's shuffle is its own: which B rows come does not follow A's.
    a_only = TrainStream(train, 16, 0, slice(None), "symmetric").batch_at(3)["image"]
    np.testing.assert_array_equal(a_only, batch["image"])
    seeds = [TrainStream(train, 16, s, slice(None), "symmetric").batch_at(0)["label_b"]
             for s in (0, 1)]
    assert not np.array_equal(*seeds)
    rows = list(eval_batches(splits["test"], 64, slice(None), "symmetric"))
    assert sum(int(b["mask"].sum()) for b in rows) == len(splits["test"])
    assert all(b["image_b"].shape == b["image"].shape for b in rows)
    config.data.domain_b.pad_to = 10
    with pytest.raises(DatasetError, match="domain B's images are"):
        sources.from_config(config.data)
    other = load("experiments/gan_digits.py")
    other.family = "cyclegan"
    with pytest.raises(ConfigError, match="cyclegan"):
        build(load("experiments/cyclegan_digits.py"),
              sources.DataSpec.of(sources.from_config(other.data)["train"]))


def test_the_pool_fills_then_swaps_half_of_the_time_and_keeps_what_it_returns():
    pool = image_pool.init(50, (1, 1, 1))
    first = jnp.arange(50, dtype=jnp.float32).reshape(50, 1, 1, 1)
    returned, pool = jax.jit(image_pool.query)(pool, first, jax.random.key(0))
    np.testing.assert_array_equal(returned, first)  # not full yet: every image passes
    np.testing.assert_array_equal(pool["images"], first)
    assert int(pool["count"]) == 50
    stored_before = set(np.asarray(pool["images"]).ravel().tolist())
    new = 1000.0 + jnp.arange(4000, dtype=jnp.float32).reshape(4000, 1, 1, 1)
    returned, after = jax.jit(image_pool.query)(pool, new, jax.random.key(1))
    returned = np.asarray(returned).ravel()
    from_pool = returned != np.asarray(new).ravel()
    assert abs(from_pool.mean() - 0.5) < 0.03  # 4000 draws: 0.5 +- 0.008 (1 sd)
    # What came from the pool was stored before it was returned: an old image or a new one
    # stored earlier in the same batch.
    seen = stored_before | set(np.asarray(new).ravel().tolist())
    assert set(returned[from_pool].tolist()) <= seen
    assert int(after["count"]) == 50
    assert set(np.asarray(after["images"]).ravel().tolist()) != stored_before


def test_the_cycle_and_identity_losses_vanish_for_identity_generators():
    config = load("experiments/cyclegan_digits.py")
    splits = sources.from_config(config.data)
    family = build(config, sources.DataSpec.of(splits["train"]))
    family.generate = lambda params, images: images  # both generators: the identity
    stream = TrainStream(splits["train"], 16, 0, slice(None), "symmetric")
    batch = {k: jnp.asarray(v) for k, v in stream.batch_at(0).items()}
    d_params = {d: family.discriminator.init(jax.random.key(i), batch["image"])["params"]
                for i, d in enumerate("ab")}
    loss, (fakes, metrics) = family.generator_objective({"ab": None, "ba": None}, d_params,
                                                        batch["image"], batch["image_b"])
    for key in ("cycle_a", "cycle_b", "identity_a", "identity_b"):
        assert float(metrics[key]) == 0.0, key
    np.testing.assert_allclose(loss, metrics["g_adversarial_ab"] + metrics["g_adversarial_ba"])
    np.testing.assert_array_equal(fakes["b"], batch["image"])


def test_least_squares_losses_and_the_constant_then_linear_schedule():
    ones, zeros = jnp.ones((2, 3, 3)), jnp.zeros((2, 3, 3))
    assert float(gan_losses.least_squares_discriminator_loss(ones, zeros)) == 0.0
    assert float(gan_losses.least_squares_discriminator_loss(zeros, ones)) == 1.0
    assert float(gan_losses.least_squares_generator_loss(ones)) == 0.0
    train = load("experiments/cyclegan_digits.py").train
    schedule = learning_rate_schedule(train)
    half = train.num_steps // 2
    np.testing.assert_allclose([schedule(0), schedule(half), schedule(half + half // 2)],
                               [train.learning_rate, train.learning_rate,
                                train.learning_rate / 2], rtol=1e-6)
    assert float(schedule(train.num_steps)) == 0.0


def test_the_networks_keep_the_image_shape_and_patchgan_scores_70px_patches():
    x = jnp.zeros((2, 16, 16, 1))
    generator = ResnetGenerator(channels=1, width=4, blocks=1)
    params = jax.jit(generator.init, compiler_options=INIT_COMPILER_OPTIONS)(jax.random.key(0), x)
    out = jax.jit(generator.apply)(params, x + 0.5)
    assert out.shape == (2, 16, 16, 1) and float(jnp.abs(out).max()) <= 1.0
    assert not any("ConvTranspose" in str(k) for k in jax.tree_util.tree_flatten_with_path(
        params)[0])
    assert receptive_field(4) == 70  # the paper's discriminator
    discriminator = PatchDiscriminator((4, 8, 16))
    scores = jax.jit(discriminator.apply)(
        jax.jit(discriminator.init, compiler_options=INIT_COMPILER_OPTIONS)(
            jax.random.key(1), x), x)
    assert scores.shape == (2, 2, 2)  # 16 -> 8 -> 4 -> 3 -> 2
    with pytest.raises(ValueError, match="divisible"):
        jax.eval_shape(generator.init, jax.random.key(0), jnp.zeros((1, 10, 10, 1)))


@pytest.mark.slow
def test_sigkill_restart_and_eight_devices_end_at_the_uninterrupted_parameters(tmp_path):
    # The pools (model_state) are part of the state compared; the kill comes after they
    # filled (8 images, batches of 16: full after the first step).
    assert_resumes_exactly_on_any_device_count(
        str(tmp_path), [*TINY_CG, "--config.checkpoint.every_steps=5"], steps=20, kill_after=5,
        keys=("g_loss", "d_loss", "cycle_a", "cycle_b", "identity_a", "d_a_fake", "d_b_real",
              "g_grad_norm", "d_grad_norm"))
    _, state = final_state(str(tmp_path / "killed"))
    assert int(state["model_state"]["a"]["count"]) == 8
    assert float(np.abs(state["model_state"]["b"]["images"]).min(axis=(1, 2, 3)).max()) > 0


@pytest.mark.slow
def test_train_sample_evaluate_and_translate_files(tmp_path):
    workdir = str(tmp_path / "run")
    trained = run_cli("train", [*TINY_CG, f"--workdir={workdir}", "--config.train.num_steps=20",
                                "--config.sample.every_steps=20"])
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert os.path.isfile(os.path.join(workdir, "samples", "translations_step_0000020.png"))
    sampled = run_cli("sample", [f"--workdir={workdir}", "--num=4"])
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    picture = sampled.stdout.split()[-1]
    assert "translation_rows" in picture and Image.open(picture).size[0] > 6 * 8
    evaluated = run_cli("evaluate", [f"--workdir={workdir}", "--num_samples=64",
                                     "--config.eval.sample_batch_size=32", *SMALL_EVAL[2:]])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    with open(os.path.join(workdir, "metrics.json")) as f:
        values = json.load(f)["values"]
    for direction in ("ab", "ba"):
        for key in ("fid", "kid", "real_fid", "real_kid", "cycle_mse", "mse_to_truth",
                    "identity_mse_to_truth", "class_agreement"):
            assert np.isfinite(values[f"{key}_{direction}"]), (key, direction)
        # The floor, real training images of the target domain, beats 20 steps' translations.
        assert values[f"real_fid_{direction}"] < values[f"fid_{direction}"]
    # The identity map's error against the true inversion: that of digits, ~0.7 per pixel.
    assert values["identity_mse_to_truth_ab"] > 0.3
    inputs = tmp_path / "mine"
    write_image(str(inputs / "a.png"), (24, 16), "RGB")
    write_image(str(inputs / "sub" / "b.jpg"), (8, 8), "L", fmt="JPEG")
    out = tmp_path / "out"
    translated = run_cli("translate", [f"--workdir={workdir}", f"--input={inputs}",
                                       f"--output={out}", "--direction=ba"])
    assert translated.returncode == 0, translated.stderr[-3000:]
    for name in ("a.png", os.path.join("sub", "b.png")):
        assert np.asarray(Image.open(out / name)).shape[:2] == (8, 8)
    with open(inputs / "bad.png", "wb") as f:
        f.write(b"nope")
    failed = run_cli("translate", [f"--workdir={workdir}", f"--input={inputs}",
                                   f"--output={out}"])
    assert failed.returncode != 0 and "bad.png" in failed.stderr.strip().splitlines()[-1]
