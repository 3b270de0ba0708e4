"""Tests of approxifer_onnx.data on small files written to tmp_path, and on the real
Fashion-MNIST test set when it is installed."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from approxifer_onnx import data
from approxifer_onnx.data import (
    DEFAULT_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    Dataset,
    default_data_path,
    load_dataset,
    load_idx_folder,
    preprocess,
    read_idx,
    save_npz,
)
from approxifer_onnx.exceptions import DataError

SEED = 20240611


def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    """Encode `array` as an IDX file, written field by field from the format description."""
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, gzipped: bool = False) -> Path:
    content = idx_bytes(array, type_code)
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def random_images(count: int, height: int = 4, width: int = 3) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return rng.integers(0, 256, size=(count, height, width), dtype=np.uint8)


def write_mnist_folder(folder: Path, count: int = 6, prefix: str = "t10k", dotted: bool = False):
    """Write an MNIST-style images and labels pair and return (images, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = random_images(count)
    labels = (np.arange(count) % 10).astype(np.uint8)
    separator = "." if dotted else "-"
    write_idx(folder / f"{prefix}-images{separator}idx3-ubyte.gz", images, gzipped=True)
    write_idx(folder / f"{prefix}-labels{separator}idx1-ubyte.gz", labels, gzipped=True)
    return images, labels


# ---------------------------------------------------------------------------------------------
# read_idx

# (type code, numpy dtype, values): every IDX element type, with values at the ends of its range.
IDX_TYPES = [
    (0x08, np.uint8, [0, 1, 127, 128, 255, 7]),
    (0x09, np.int8, [-128, -1, 0, 1, 127, 5]),
    (0x0B, np.int16, [-32768, -2, 0, 258, 32767, 3]),
    (0x0C, np.int32, [-(2**31), -70000, 0, 65536, 2**31 - 1, 9]),
    (0x0D, np.float32, [-1.5, 0.0, 1e-30, 3.25, 6.5e7, -0.125]),
    (0x0E, np.float64, [-1e300, 0.0, 1e-300, np.pi, 2.5, -7.0]),
]


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("type_code, dtype, values", IDX_TYPES)
def test_read_idx_round_trip(tmp_path, type_code, dtype, values, gzipped):
    array = np.array(values, dtype=dtype).reshape(2, 3)
    path = write_idx(tmp_path / "array-idx2", array, type_code, gzipped)

    result = read_idx(path)

    assert result.dtype == np.dtype(dtype)
    assert result.dtype.isnative
    assert result.shape == (2, 3)
    np.testing.assert_array_equal(result, array)


def test_read_idx_detects_gzip_by_content(tmp_path):
    images = random_images(3)
    path = write_idx(tmp_path / "no-gz-suffix-idx3-ubyte", images, gzipped=True)

    np.testing.assert_array_equal(read_idx(path), images)


def test_read_idx_result_is_writable(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.arange(5, dtype=np.uint8))

    result = read_idx(path)
    result[0] = 9

    assert result[0] == 9


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")

    with pytest.raises(
        DataError, match=r"bad-idx1-ubyte: not an IDX file: bad magic number 01 02 08 01"
    ):
        read_idx(path)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "odd-idx1-ubyte"
    path.write_bytes(b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"\x00")

    with pytest.raises(
        DataError, match=r"odd-idx1-ubyte: unknown IDX type code 0x0A; known codes: 0x08"
    ):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path):
    content = idx_bytes(random_images(1, 28, 28), 0x08)
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(content[:-84])

    with pytest.raises(
        DataError,
        match=r"short-idx3-ubyte: truncated IDX data: expected 784 bytes for shape \(1, 28, 28\) "
        r"of uint8, got 700",
    ):
        read_idx(path)


def test_read_idx_truncated_gzip_data(tmp_path):
    content = idx_bytes(np.arange(10, dtype=">i4"), 0x0C)
    path = tmp_path / "short-idx1-int.gz"
    path.write_bytes(gzip.compress(content[:-1]))

    with pytest.raises(DataError, match=r"expected 40 bytes for shape \(10,\) of int32, got 39"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "header-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 2))

    with pytest.raises(
        DataError, match=r"truncated IDX header: expected 16 bytes for 3 dimensions, got 8"
    ):
        read_idx(path)


def test_read_idx_shorter_than_magic(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")

    with pytest.raises(DataError, match=r"expected at least 4 bytes, got 2"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(4, dtype=np.uint8), 0x08) + b"\x00\x00")

    with pytest.raises(DataError, match=r"2 unexpected bytes after the IDX data: expected 4 bytes"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(idx_bytes(random_images(2), 0x08))[:-12])

    with pytest.raises(DataError, match=r"broken.gz: invalid gzip data"):
        read_idx(path)


# ---------------------------------------------------------------------------------------------
# IDX folders


def test_load_idx_folder_test_split(tmp_path):
    images, labels = write_mnist_folder(tmp_path / "mnist")

    dataset = load_idx_folder(tmp_path / "mnist")

    assert dataset.inputs.dtype == np.float32
    assert dataset.inputs.shape == (6, 1, 4, 3)
    np.testing.assert_array_equal(dataset.inputs[:, 0], images.astype(np.float32) / 255)
    assert dataset.labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.name == "mnist-test"
    assert "t10k-images-idx3-ubyte.gz" in dataset.source
    assert "t10k-labels-idx1-ubyte.gz" in dataset.source
    assert dataset.class_names is None


def test_idx_folder_train_split_plain(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    images = random_images(3)
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", np.array([4, 0, 9], dtype=np.uint8))

    dataset = load_idx_folder(folder, split="train")

    np.testing.assert_array_equal(dataset.labels, [4, 0, 9])
    np.testing.assert_array_equal(dataset.inputs[:, 0] * 255, images)


def test_load_idx_folder_dotted_names(tmp_path):
    images, labels = write_mnist_folder(tmp_path / "dotted", dotted=True)

    dataset = load_idx_folder(tmp_path / "dotted")

    np.testing.assert_array_equal(dataset.labels, labels)
    assert "t10k-images.idx3-ubyte.gz" in dataset.source


def test_load_idx_folder_fashion_class_names(tmp_path):
    write_mnist_folder(tmp_path / "Fashion-MNIST")

    dataset = load_idx_folder(tmp_path / "Fashion-MNIST")

    assert dataset.class_names == FASHION_MNIST_CLASSES


def test_load_idx_folder_count_mismatch(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", random_images(5))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))

    with pytest.raises(
        DataError,
        match=r"image and label counts differ: .*t10k-images-idx3-ubyte contains 5 images but "
        r".*t10k-labels-idx1-ubyte contains 4 labels",
    ):
        load_idx_folder(folder)


def test_load_idx_folder_missing_split(tmp_path):
    write_mnist_folder(tmp_path / "train-only", prefix="train")

    with pytest.raises(
        DataError,
        match=r"no IDX images file for split='test', expected one of t10k-images-idx3-ubyte, "
        r".*; it has the 'train' split, pass split='train'",
    ):
        load_idx_folder(tmp_path / "train-only")


def test_load_idx_folder_without_labels(tmp_path, caplog):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", random_images(2))

    dataset = load_idx_folder(folder)

    assert dataset.labels is None
    assert len(dataset) == 2
    assert "no IDX labels file for split='test'" in caplog.text


def test_load_idx_folder_limit(tmp_path):
    images, labels = write_mnist_folder(tmp_path / "mnist", count=8)

    dataset = load_idx_folder(tmp_path / "mnist", limit=3)

    assert len(dataset) == 3
    np.testing.assert_array_equal(dataset.labels, labels[:3])


def test_single_idx_file_with_labels(tmp_path):
    images, labels = write_mnist_folder(tmp_path / "files")

    dataset = load_dataset(tmp_path / "files" / "t10k-images-idx3-ubyte.gz")

    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.name == "t10k-images-idx3-ubyte"
    assert dataset.source.endswith("t10k-labels-idx1-ubyte.gz")


def test_single_idx_file_alone(tmp_path):
    path = write_idx(tmp_path / "scans-idx3-ubyte", random_images(2))

    dataset = load_dataset(path)

    assert dataset.labels is None
    assert dataset.inputs.shape == (2, 1, 4, 3)


def test_labels_file_rejected_as_images(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(3, dtype=np.uint8))

    with pytest.raises(
        DataError, match=r"expected images with at least 2 dimensions, got shape \(3,\)"
    ):
        load_dataset(path)


# ---------------------------------------------------------------------------------------------
# .npy and .npz files


def test_load_dataset_npy_uint8(tmp_path):
    images = random_images(5)
    np.save(tmp_path / "images.npy", images)

    dataset = load_dataset(tmp_path / "images.npy")

    assert dataset.labels is None
    assert dataset.name == "images"
    np.testing.assert_array_equal(dataset.inputs, images[:, np.newaxis].astype(np.float32) / 255)


def test_load_dataset_npy_float_nhwc(tmp_path):
    rng = np.random.default_rng(SEED)
    images = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    np.save(tmp_path / "nhwc.npy", images)

    dataset = load_dataset(tmp_path / "nhwc.npy", layout="NHWC")

    assert dataset.inputs.shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(dataset.inputs, images.transpose(0, 3, 1, 2))


def test_npy_vectors_keep_shape(tmp_path):
    vectors = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "vectors.npy", vectors)

    dataset = load_dataset(tmp_path / "vectors.npy", mean=2.0, std=4.0)

    assert dataset.inputs.shape == (3, 4)
    np.testing.assert_allclose(dataset.inputs, (vectors - 2.0) / 4.0, rtol=1e-6)


def test_load_dataset_object_npy_rejected(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)

    with pytest.raises(DataError, match=r"objects.npy: cannot read the .npy file"):
        load_dataset(tmp_path / "objects.npy")


@pytest.mark.parametrize(
    "images_key, labels_key", [("x", "y"), ("images", "labels"), ("inputs", "labels")]
)
def test_load_dataset_npz_keys(tmp_path, images_key, labels_key):
    images = random_images(4)
    labels = np.array([3, 1, 0, 2])
    np.savez(tmp_path / "set.npz", **{images_key: images, labels_key: labels})

    dataset = load_dataset(tmp_path / "set.npz")

    np.testing.assert_array_equal(dataset.inputs[:, 0] * 255, images)
    np.testing.assert_array_equal(dataset.labels, labels)


def test_load_dataset_npz_keras_split_keys(tmp_path):
    train, test = random_images(3), random_images(2) // 2
    np.savez(
        tmp_path / "mnist.npz",
        x_train=train,
        y_train=np.array([1, 2, 3], dtype=np.uint8),
        x_test=test,
        y_test=np.array([7, 8], dtype=np.uint8),
    )

    dataset = load_dataset(tmp_path / "mnist.npz")
    train_set = load_dataset(tmp_path / "mnist.npz", split="train")

    np.testing.assert_array_equal(dataset.labels, [7, 8])
    np.testing.assert_array_equal(dataset.inputs[:, 0] * 255, test)
    np.testing.assert_array_equal(train_set.labels, [1, 2, 3])


def test_load_dataset_npz_unknown_keys(tmp_path):
    np.savez(tmp_path / "odd.npz", pixels=random_images(2), targets=np.array([0, 1]))

    with pytest.raises(
        DataError,
        match=r"odd.npz: no images array found; expected one of the keys x, images, inputs, "
        r"x_test, found pixels, targets",
    ):
        load_dataset(tmp_path / "odd.npz")


def test_load_dataset_npz_ambiguous_keys(tmp_path):
    np.savez(tmp_path / "two.npz", x=random_images(2), images=random_images(2))

    with pytest.raises(DataError, match=r"two.npz: ambiguous arrays: found the keys x, images"):
        load_dataset(tmp_path / "two.npz")


def test_load_dataset_npz_label_count_mismatch(tmp_path):
    np.savez(tmp_path / "short.npz", x=random_images(3), y=np.array([0, 1]))

    with pytest.raises(
        DataError, match=r"the labels array 'y' has shape \(2,\), expected \(3,\) to match"
    ):
        load_dataset(tmp_path / "short.npz")


def test_load_dataset_npz_float_labels(tmp_path):
    np.savez(tmp_path / "float.npz", x=random_images(2), y=np.array([0.0, 1.0]))

    with pytest.raises(DataError, match=r"has dtype float64, expected integer class indices"):
        load_dataset(tmp_path / "float.npz")


def test_save_npz_round_trip_dataset(tmp_path):
    images, labels = write_mnist_folder(tmp_path / "fashion-mnist", count=7)
    original = load_idx_folder(tmp_path / "fashion-mnist")

    written = save_npz(tmp_path / "slice.npz", original.head(5))
    stored = np.load(written)
    restored = load_dataset(written)

    assert written == tmp_path / "slice.npz"
    assert stored["images"].dtype == np.uint8
    np.testing.assert_array_equal(stored["images"][:, 0], images[:5])
    np.testing.assert_array_equal(restored.inputs, original.inputs[:5])
    np.testing.assert_array_equal(restored.labels, labels[:5])
    assert restored.class_names == FASHION_MNIST_CLASSES
    assert restored.name == "fashion-mnist-test"


def test_save_npz_arrays_tuple(tmp_path):
    images = random_images(3)

    save_npz(tmp_path / "pair.npz", (images, [2, 0, 1]))
    restored = load_dataset(tmp_path / "pair.npz")

    np.testing.assert_array_equal(restored.inputs[:, 0] * 255, images)
    np.testing.assert_array_equal(restored.labels, [2, 0, 1])


def test_save_npz_keeps_unscaled_floats(tmp_path):
    images = np.array([[[0.5, -1.25]], [[3.0, 0.1]]], dtype=np.float32)

    save_npz(tmp_path / "floats.npz", images)
    stored = np.load(tmp_path / "floats.npz")

    assert stored["images"].dtype == np.float32
    np.testing.assert_array_equal(stored["images"], images)
    assert "labels" not in stored.files


def test_save_npz_rejects_other_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"path='.*slice.npy' must end in .npz"):
        save_npz(tmp_path / "slice.npy", random_images(1))


def test_save_npz_rejects_unknown_data(tmp_path):
    with pytest.raises(TypeError, match=r"data must be a Dataset, an images array or a tuple"):
        save_npz(tmp_path / "x.npz", {"x": random_images(1)})


# ---------------------------------------------------------------------------------------------
# Image folders


def write_png(path: Path, pixels: np.ndarray) -> np.ndarray:
    image_module = pytest.importorskip("PIL.Image")
    path.parent.mkdir(parents=True, exist_ok=True)
    image_module.fromarray(pixels).save(path)
    return pixels


def test_image_folder_class_subfolders(tmp_path):
    rng = np.random.default_rng(SEED)
    root = tmp_path / "pictures"
    # Written out of order: classes are numbered by sorted folder name, files sorted by name.
    cat_b = write_png(root / "cat" / "b.png", rng.integers(0, 256, (5, 4), dtype=np.uint8))
    cat_a = write_png(root / "cat" / "a.png", rng.integers(0, 256, (5, 4), dtype=np.uint8))
    ant = write_png(root / "ant" / "z.png", rng.integers(0, 256, (5, 4), dtype=np.uint8))
    (root / "ant" / "notes.txt").write_text("not an image")

    dataset = load_dataset(root)

    assert dataset.class_names == ("ant", "cat")
    np.testing.assert_array_equal(dataset.labels, [0, 1, 1])
    assert dataset.inputs.shape == (3, 1, 5, 4)
    expected = np.stack([ant, cat_a, cat_b])[:, np.newaxis].astype(np.float32) / 255
    np.testing.assert_array_equal(dataset.inputs, expected)
    assert dataset.name == "pictures"
    assert dataset.source.split(", ")[0].endswith("ant/z.png")


def test_image_folder_flat_has_no_labels(tmp_path):
    write_png(tmp_path / "2.png", np.full((3, 3), 10, dtype=np.uint8))
    write_png(tmp_path / "1.png", np.full((3, 3), 20, dtype=np.uint8))

    dataset = load_dataset(tmp_path)

    assert dataset.labels is None
    assert dataset.class_names is None
    np.testing.assert_array_equal(dataset.inputs[:, 0, 0, 0] * 255, [20, 10])


def test_image_folder_rgb_three_channels(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    write_png(tmp_path / "red.png", rgb)
    write_png(tmp_path / "gray.png", np.full((2, 3), 51, dtype=np.uint8))

    dataset = load_dataset(tmp_path)

    assert dataset.inputs.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(dataset.inputs[0], np.full((3, 2, 3), 0.2, dtype=np.float32))
    np.testing.assert_array_equal(dataset.inputs[1, 0], np.ones((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(dataset.inputs[1, 1:], np.zeros((2, 2, 3), dtype=np.float32))


def test_image_folder_channels_option(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    write_png(tmp_path / "green.png", rgb)

    gray = load_dataset(tmp_path, channels=1)

    # Pillow's "L" conversion: L = (299 R + 587 G + 114 B) / 1000, rounded.
    assert gray.inputs.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(gray.inputs * 255, np.full((1, 1, 2, 2), round(0.587 * 200)))


def test_image_folder_gray_to_rgb(tmp_path):
    pixels = write_png(tmp_path / "gray.png", np.array([[0, 60], [120, 255]], dtype=np.uint8))

    dataset = load_dataset(tmp_path, channels=3, scale=False)

    assert dataset.inputs.shape == (1, 3, 2, 2)
    for channel in range(3):
        np.testing.assert_array_equal(dataset.inputs[0, channel], pixels)


def test_image_folder_without_pillow(tmp_path, monkeypatch):
    write_png(tmp_path / "a.png", np.zeros((2, 2), dtype=np.uint8))
    monkeypatch.setitem(sys.modules, "PIL", None)

    with pytest.raises(ImportError, match=r"reading image folders needs Pillow; install it with"):
        load_dataset(tmp_path)


def test_image_folder_resize(tmp_path):
    write_png(tmp_path / "small.png", np.full((4, 4), 100, dtype=np.uint8))
    write_png(tmp_path / "large.png", np.full((8, 6), 100, dtype=np.uint8))

    dataset = load_dataset(tmp_path, size=(3, 5))

    assert dataset.inputs.shape == (2, 1, 3, 5)
    np.testing.assert_array_equal(dataset.inputs * 255, np.full((2, 1, 3, 5), 100))


def test_image_folder_size_mismatch(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "b.png", np.zeros((4, 5), dtype=np.uint8))

    with pytest.raises(
        DataError,
        match=r"b.png: image of 5x4 pixels \(width x height\) differs from 4x4 of .*a.png; "
        r"pass size=\(height, width\)",
    ):
        load_dataset(tmp_path)


def test_image_folder_unreadable_image(tmp_path):
    write_png(tmp_path / "good.png", np.zeros((2, 2), dtype=np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")

    with pytest.raises(DataError, match=r"broken.jpg: cannot read the image"):
        load_dataset(tmp_path)


def test_image_folder_truncated_png(tmp_path):
    write_png(tmp_path / "whole.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    content = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "whole.png").write_bytes(content[: len(content) // 2])

    with pytest.raises(DataError, match=r"whole.png: cannot read the image"):
        load_dataset(tmp_path, channels=1)


def test_image_folder_mixed_layout(tmp_path):
    write_png(tmp_path / "loose.png", np.zeros((2, 2), dtype=np.uint8))
    write_png(tmp_path / "dog" / "d.png", np.zeros((2, 2), dtype=np.uint8))

    with pytest.raises(DataError, match=r"contains both images \(loose.png, ...\) and class sub"):
        load_dataset(tmp_path)


def test_image_folder_empty(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")

    with pytest.raises(DataError, match=r"no IDX files and no images \(.png, .jpg, .jpeg\) found"):
        load_dataset(tmp_path)


def test_image_folder_limit_reads_first_files(tmp_path):
    for index in range(4):
        write_png(tmp_path / f"{index}.png", np.full((2, 2), index, dtype=np.uint8))

    dataset = load_dataset(tmp_path, limit=2, scale=False)

    np.testing.assert_array_equal(dataset.inputs[:, 0, 0, 0], [0, 1])


def test_image_folder_sixteen_bit_png(tmp_path):
    write_png(tmp_path / "deep.png", np.array([[0, 256], [32768, 65535]], dtype=np.uint16))

    dataset = load_dataset(tmp_path, scale=False)

    np.testing.assert_array_equal(dataset.inputs[0, 0], [[0, 1], [128, 255]])


# ---------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocess_scales_uint8():
    images = np.array([[[0, 51], [255, 102]]], dtype=np.uint8)

    inputs = preprocess(images)

    assert inputs.dtype == np.float32
    assert inputs.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(inputs[0, 0], np.array([[0, 0.2], [1, 0.4]], dtype=np.float32))


def test_preprocess_without_scale():
    images = np.array([[[0, 51]]], dtype=np.uint8)

    np.testing.assert_array_equal(preprocess(images, scale=False)[0, 0], [[0.0, 51.0]])


def test_preprocess_leaves_floats_unscaled():
    images = np.array([[[2.5, -3.0]]])

    np.testing.assert_array_equal(preprocess(images, scale=True)[0, 0], [[2.5, -3.0]])


def test_preprocess_scalar_mean_std():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)

    inputs = preprocess(images, mean=0.5, std=0.25)

    expected = [[(0 - 0.5) / 0.25, (1 - 0.5) / 0.25], [(0.2 - 0.5) / 0.25, (0.4 - 0.5) / 0.25]]
    np.testing.assert_allclose(inputs[0, 0], expected, rtol=1e-6)


def test_preprocess_per_channel_nhwc():
    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)  # (N, H, W, C)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    inputs = preprocess(images, mean=mean, std=std, layout="NHWC")

    assert inputs.shape == (2, 3, 3, 4)
    for channel in range(3):
        expected = (images[..., channel] / 255.0 - mean[channel]) / std[channel]
        np.testing.assert_allclose(inputs[:, channel], expected, rtol=1e-5, atol=1e-6)


def test_preprocess_mean_only():
    images = np.ones((1, 2, 1, 1), dtype=np.float32)

    inputs = preprocess(images, mean=[0.25, 0.5])

    np.testing.assert_array_equal(inputs[0, :, 0, 0], [0.75, 0.5])


@pytest.mark.parametrize(
    "options, error, message",
    [
        (
            {"mean": [0.1, 0.2]},
            ValueError,
            r"mean=\[0.1, 0.2\] has 2 values, but the images have 3 channels",
        ),
        ({"std": 0.0}, ValueError, r"std=0.0 must be positive for every channel"),
        ({"std": [1.0, -1.0, 1.0]}, ValueError, r"std=\[1.0, -1.0, 1.0\] must be positive"),
        ({"mean": float("nan")}, ValueError, r"mean=nan must be finite"),
        ({"mean": "0.5"}, TypeError, r"mean='0.5' must be a number or a sequence of numbers"),
        ({"layout": "nchw"}, ValueError, r"layout='nchw' is invalid; expected one of NCHW, NHWC"),
        ({"scale": 1}, TypeError, r"scale must be True or False, got 1"),
    ],
)
def test_preprocess_rejects_bad_options(options, error, message):
    images = np.zeros((1, 3, 2, 2), dtype=np.uint8)

    with pytest.raises(error, match=message):
        preprocess(images, **options)


def test_preprocess_rejects_integer_images():
    with pytest.raises(
        TypeError, match=r"images must be uint8 pixels or floating point, got dtype int16"
    ):
        preprocess(np.zeros((1, 2, 2), dtype=np.int16))


def test_preprocess_vectors_reject_channel_values():
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 5\) have no channel axis"):
        preprocess(np.zeros((2, 5), dtype=np.float32), mean=[0.1, 0.2])


def test_gray_array_to_rgb(tmp_path):
    images = random_images(2)
    np.save(tmp_path / "gray.npy", images)

    dataset = load_dataset(tmp_path / "gray.npy", channels=3, mean=[0.0, 0.5, 1.0])

    assert dataset.inputs.shape == (2, 3, 4, 3)
    for channel, mean in enumerate([0.0, 0.5, 1.0]):
        np.testing.assert_allclose(dataset.inputs[:, channel], images / 255.0 - mean, atol=1e-6)


def test_rgb_array_to_gray(tmp_path):
    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", images)

    dataset = load_dataset(tmp_path / "rgb.npy", channels=1)

    red, green, blue = (images[:, channel] / 255.0 for channel in range(3))
    expected = 0.299 * red + 0.587 * green + 0.114 * blue
    np.testing.assert_allclose(dataset.inputs[:, 0], expected, rtol=1e-5)


def test_load_dataset_resizes_arrays(tmp_path):
    images = np.full((2, 4, 4), 128, dtype=np.uint8)
    np.save(tmp_path / "flat.npy", images)

    dataset = load_dataset(tmp_path / "flat.npy", size=6)

    assert dataset.inputs.shape == (2, 1, 6, 6)
    np.testing.assert_allclose(dataset.inputs, 128 / 255, rtol=1e-6)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"split": "validation"}, ValueError, r"split='validation' is invalid; expected one of"),
        ({"layout": "CHW"}, ValueError, r"layout='CHW' is invalid"),
        ({"channels": 2}, ValueError, r"channels=2 is invalid; expected 1 \(grayscale\), 3"),
        ({"size": (0, 4)}, ValueError, r"size height=0 is invalid; it must be at least 1"),
        ({"size": "28x28"}, TypeError, r"size='28x28' must be \(height, width\)"),
        ({"limit": 0}, ValueError, r"limit=0 is invalid; it must be at least 1"),
        ({"limit": 2.5}, TypeError, r"limit must be an integer, got 2.5"),
    ],
)
def test_load_dataset_rejects_bad_options(tmp_path, options, error, message):
    np.save(tmp_path / "images.npy", random_images(1))

    with pytest.raises(error, match=message):
        load_dataset(tmp_path / "images.npy", **options)


def test_load_dataset_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data path .*absent.npz does not exist"):
        load_dataset(tmp_path / "absent.npz")


def test_load_dataset_default_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEFAULT_FASHION_MNIST", tmp_path / "not-installed")

    assert default_data_path() is None
    with pytest.raises(
        FileNotFoundError,
        match=r"default Fashion-MNIST folder .*not-installed is missing; install it with "
        r"`apt-get install dataset-fashion-mnist` on Debian or Ubuntu, or pass a data path",
    ):
        load_dataset()


def test_load_dataset_default_folder(tmp_path, monkeypatch):
    images, labels = write_mnist_folder(tmp_path / "fashion-mnist")
    monkeypatch.setattr(data, "DEFAULT_FASHION_MNIST", tmp_path / "fashion-mnist")

    dataset = load_dataset()

    assert default_data_path() == tmp_path / "fashion-mnist"
    np.testing.assert_array_equal(dataset.labels, labels)


# ---------------------------------------------------------------------------------------------
# Dataset


def make_dataset(count: int = 5) -> Dataset:
    inputs = np.arange(count * 2, dtype=np.float32).reshape(count, 2)
    return Dataset(inputs=inputs, labels=np.arange(count) % 3, source="memory", name="toy")


def test_dataset_subset_order():
    dataset = make_dataset()

    subset = dataset.subset([4, 0, 2])

    assert len(subset) == 3
    np.testing.assert_array_equal(subset.inputs, [[8, 9], [0, 1], [4, 5]])
    np.testing.assert_array_equal(subset.labels, [1, 0, 2])
    assert subset.name == "toy"


def test_dataset_subset_mask():
    dataset = make_dataset()

    subset = dataset.subset(dataset.labels == 1)

    np.testing.assert_array_equal(subset.inputs[:, 0], [2, 8])


def test_dataset_subset_empty():
    assert len(make_dataset().subset([])) == 0


def test_dataset_subset_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"index 5 is out of range for a dataset of 5 examples"):
        make_dataset().subset([0, 5])


def test_dataset_subset_rejects_short_mask():
    with pytest.raises(ValueError, match=r"boolean mask must have shape \(5,\).*got shape \(3,\)"):
        make_dataset().subset(np.ones(3, dtype=bool))


def test_dataset_head():
    dataset = make_dataset()

    assert len(dataset.head(2)) == 2
    assert len(dataset.head(50)) == 5
    np.testing.assert_array_equal(dataset.head(2).labels, [0, 1])


def test_dataset_rejects_bad_labels():
    inputs = np.zeros((3, 2), dtype=np.float32)

    with pytest.raises(ValueError, match=r"labels must have shape \(3,\) to match the 3 inputs"):
        Dataset(inputs=inputs, labels=np.zeros(2, dtype=int), source="", name="")
    with pytest.raises(TypeError, match=r"labels must be integer class indices, got dtype float64"):
        Dataset(inputs=inputs, labels=np.zeros(3), source="", name="")
    with pytest.raises(ValueError, match=r"label 2 has no class name: only 2 class_names given"):
        Dataset(inputs=inputs, labels=[0, 1, 2], source="", name="", class_names=("a", "b"))


def test_dataset_rejects_integer_inputs():
    with pytest.raises(TypeError, match=r"inputs must be floating point, got dtype uint8"):
        Dataset(inputs=np.zeros((2, 2), dtype=np.uint8), labels=None, source="", name="")


def test_dataset_repr_shows_shapes():
    assert repr(make_dataset()) == (
        "Dataset(name='toy', inputs=float32(5, 2), labels=int64(5,), source='memory')"
    )


# ---------------------------------------------------------------------------------------------
# The real Fashion-MNIST test set (Debian package dataset-fashion-mnist)


@pytest.mark.realdata
@pytest.mark.skipif(
    not DEFAULT_FASHION_MNIST.is_dir(),
    reason=f"{DEFAULT_FASHION_MNIST} is missing; apt-get install dataset-fashion-mnist",
)
def test_real_fashion_mnist_test_set():
    dataset = load_dataset(DEFAULT_FASHION_MNIST)

    assert dataset.inputs.shape == (10000, 1, 28, 28)
    assert dataset.inputs.dtype == np.float32
    assert dataset.inputs.min() == 0.0
    assert dataset.inputs.max() == 1.0
    np.testing.assert_array_equal(np.bincount(dataset.labels), np.full(10, 1000))
    assert dataset.class_names == FASHION_MNIST_CLASSES
    assert dataset.name == "fashion-mnist-test"
