"""Sources and the deterministic batching pipeline."""

import gzip
import logging
import os
import struct

import numpy as np
import pytest

from jaxgen.data import sources
from jaxgen.data.pipeline import TrainStream, eval_batches


@pytest.fixture(scope="module")
def digits():
    return sources.load_digits()


def test_digits_split(digits):
    train, test = digits["train"], digits["test"]
    assert train.images.shape[1:] == (8, 8, 1) and len(train) + len(test) == 1797
    assert train.images.max() == 16 and train.max_value == 16
    assert set(np.unique(test.labels)) == set(range(10))


def test_padding_centres_the_images_in_zeros(digits):
    import ml_collections
    data = ml_collections.ConfigDict({"source": "digits", "name": "", "data_dir": "",
                                      "synthetic_shape": (8, 8, 1), "synthetic_size": 1,
                                      "synthetic_classes": 10, "pad_to": 13})
    padded = sources.from_config(data)
    for name, split in digits.items():
        images = padded[name].images
        assert images.shape[1:] == (13, 13, 1)
        np.testing.assert_array_equal(images[:, 2:10, 2:10], split.images)  # 2 + 8 + 3
        assert images.sum() == split.images.sum()
        np.testing.assert_array_equal(padded[name].labels, split.labels)
    data.pad_to = 7
    with pytest.raises(sources.DatasetError, match="data.pad_to=7 is smaller than the 8x8"):
        sources.from_config(data)


def test_batches_are_a_function_of_seed_and_step(digits):
    a = TrainStream(digits["train"], 64, seed=3, rows=slice(0, 64))
    b = TrainStream(digits["train"], 64, seed=3, rows=slice(0, 64))
    np.testing.assert_array_equal(a.batch_at(57)["image"], b.batch_at(57)["image"])
    assert not np.array_equal(a.batch_at(0)["image"], a.batch_at(1)["image"])
    other_seed = TrainStream(digits["train"], 64, seed=4, rows=slice(0, 64))
    assert not np.array_equal(a.batch_at(0)["label"], other_seed.batch_at(0)["label"])
    assert a.batch_at(0)["image"].dtype == np.float32
    assert 0.0 <= a.batch_at(0)["image"].min() and a.batch_at(0)["image"].max() <= 1.0


def test_an_epoch_visits_each_example_once(digits):
    split = digits["train"]
    stream = TrainStream(split, 100, seed=0, rows=slice(0, 100))
    labels = np.concatenate([stream.batch_at(s)["label"] for s in range(stream.steps_per_epoch)])
    expected = np.bincount(split.labels, minlength=10)
    seen = np.bincount(labels, minlength=10)
    assert np.all(seen <= expected) and seen.sum() == 100 * stream.steps_per_epoch
    assert stream.position(stream.steps_per_epoch + 2) == {
        "step": stream.steps_per_epoch + 2, "epoch": 1, "batch_in_epoch": 2}


@pytest.mark.parametrize("flags", [{}, {"binarize": True}, {"dequantize": True}])
def test_process_shards_reassemble_the_global_batch(digits, flags):
    whole = TrainStream(digits["train"], 64, 0, slice(0, 64), **flags).batch_at(5)
    parts = [TrainStream(digits["train"], 64, 0, slice(p * 16, (p + 1) * 16), **flags).batch_at(5)
             for p in range(4)]
    for key in ("image", "label"):
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_binarisation_and_value_ranges(digits):
    binary = TrainStream(digits["train"], 64, 0, slice(0, 64), binarize=True).batch_at(0)["image"]
    assert set(np.unique(binary)) == {0.0, 1.0}
    next_batch = TrainStream(digits["train"], 64, 0, slice(0, 64), binarize=True).batch_at(1)
    assert not np.array_equal(binary, next_batch["image"])
    symmetric = TrainStream(digits["train"], 64, 0, slice(0, 64), "symmetric").batch_at(0)["image"]
    assert symmetric.min() == -1.0 and symmetric.max() == 1.0
    dequantized = TrainStream(digits["train"], 64, 0, slice(0, 64),
                              dequantize=True).batch_at(0)["image"]
    assert 0.0 <= dequantized.min() and dequantized.max() < 1.0
    assert len(np.unique(dequantized)) > 17


def test_eval_batches_cover_the_split_once_with_padding(digits):
    test = digits["test"]
    batches = list(eval_batches(test, 100, slice(0, 100)))
    assert len(batches) == int(np.ceil(len(test) / 100))
    assert sum(b["mask"].sum() for b in batches) == len(test)
    labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
    np.testing.assert_array_equal(labels, test.labels)


def test_stream_rejects_a_batch_larger_than_the_data(digits):
    with pytest.raises(ValueError, match="exceeds"):
        TrainStream(digits["train"], 10_000, 0, slice(0, 10_000))


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    for split, (image_file, label_file) in sources.IDX_FILES.items():
        _write_idx(tmp_path / image_file, rng.integers(0, 256, (12, 28, 28)))
        _write_idx(tmp_path / label_file, rng.integers(0, 10, (12,)))
    splits = sources.load_idx_dir(str(tmp_path))
    assert splits["train"].images.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(
        splits["test"].images[..., 0],
        sources.read_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz")))
    raw = gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(sources.DatasetError, match="header says"):
        sources.load_idx_dir(str(tmp_path))
    with pytest.raises(sources.DatasetError, match="no IDX files"):
        sources.load_idx_dir(str(tmp_path / "missing"))


def test_debian_fashion_mnist_idx_files(caplog):
    if not os.path.isfile(os.path.join(sources.DEBIAN_FASHION_MNIST, "t10k-labels-idx1-ubyte.gz")):
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (scripts/setup.sh does)")
        pytest.skip("dataset-fashion-mnist is not installed")
    splits = sources.load("idx")  # its default directory is Debian's Fashion-MNIST
    assert splits["train"].images.shape == (60000, 28, 28, 1)
    assert splits["test"].class_labels()[9] == "Ankle boot"  # tfds's names for the pictures
    assert splits["test"].images.shape == (10000, 28, 28, 1)
    assert np.bincount(splits["test"].labels).tolist() == [1000] * 10
    # tfds's fashion_mnist is not prepared here: the tfds source falls back to the same files
    # without passing on tfds's warning about the missing dataset_info.json.
    with caplog.at_level(logging.WARNING):
        fashion = sources.load("tfds", "fashion_mnist")
    assert fashion["test"].class_names == sources.FASHION_MNIST_CLASSES
    assert "dataset_info" not in caplog.text


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=24):
        splits = sources.load("tfds", "mnist")
    assert splits["train"].images.shape == (24, 28, 28, 1)
    assert splits["train"].images.dtype == np.uint8 and splits["train"].num_classes == 10
    assert len(splits["test"]) == 24
    assert splits["test"].class_labels(3) == ["0", "1", "2"]  # tfds's mnist label names
    with pytest.raises(sources.DatasetError, match="2 class names for 10 classes"):
        sources.Split(splits["test"].images, splits["test"].labels, 255, 10, ("a", "b"))


def test_the_synthetic_source_has_the_requested_shape_and_is_deterministic():
    splits = sources.load("synthetic", synthetic=((12, 10, 3), 200, 4))
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (200, 12, 10, 3) and test.images.shape == (20, 12, 10, 3)
    assert train.images.dtype == np.uint8 and train.max_value == 255
    assert set(np.unique(train.labels)) == set(range(4)) and train.num_classes == 4
    again = sources.load("synthetic", synthetic=((12, 10, 3), 200, 4))["train"]
    np.testing.assert_array_equal(train.images, again.images)
    # Batches are a function of (seed, step), as for every source.
    a = TrainStream(train, 32, seed=1, rows=slice(0, 32)).batch_at(9)["image"]
    b = TrainStream(again, 32, seed=1, rows=slice(0, 32)).batch_at(9)["image"]
    c = TrainStream(again, 32, seed=2, rows=slice(0, 32)).batch_at(9)["image"]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32, 12, 10, 3) and not np.array_equal(a, c)
    with pytest.raises(sources.DatasetError, match=r"must be \[H, W, C\]"):
        sources.load("synthetic", synthetic=((12, 10), 200, 4))
