"""Training and test images for the zoo, read with `approxifer_onnx.data`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from approxifer_onnx.data import load_dataset, read_idx

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "ImageSet",
    "get_dataset_info",
    "load_split",
    "load_split_uint8",
]

logger = logging.getLogger(__name__)


class ImageSet(NamedTuple):
    """Images and their labels; unpacks as ``inputs, labels``."""

    inputs: np.ndarray  # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray  # int64 (N,)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives by default and what its images look like.

    Parameters
    ----------
    name : str
        Name used on the command line and in cache paths.
    default_dir : str
        Folder that contains the IDX files when the caller passes no ``data_dir``.
    num_classes : int
        Number of labels.
    image_size : tuple of int
        Image shape (C, H, W).
    """

    name: str
    default_dir: str
    num_classes: int
    image_size: tuple[int, int, int]


# Debian's dataset-fashion-mnist package installs the four gzipped IDX files in this folder.
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        default_dir="/usr/share/datasets/fashion-mnist",
        num_classes=10,
        image_size=(1, 28, 28),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        default_dir="/usr/share/datasets/mnist",
        num_classes=10,
        image_size=(1, 28, 28),
    ),
}

_SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def get_dataset_info(name: str) -> DatasetInfo:
    """Return the `DatasetInfo` called ``name``, or raise ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name]


def load_split(dataset: str, split: str, data_dir: str | Path | None = None) -> ImageSet:
    """Load one split with pixels scaled to [0, 1] and no normalisation.

    Parameters
    ----------
    dataset : str
        A key of `DATASETS`, such as ``"fashion-mnist"``.
    split : {"train", "test"}
        Which split to read.
    data_dir : str or Path, optional
        Folder with the IDX files; defaults to the dataset's ``default_dir``.

    Returns
    -------
    ImageSet
        ``inputs`` float32 of shape (N, 1, 28, 28), the pixel values divided by 255, and
        ``labels`` int64 of shape (N,).
    """
    folder = _dataset_folder(dataset, split, data_dir)
    data = load_dataset(folder, split=split)
    return ImageSet(
        np.asarray(data.inputs, dtype=np.float32), np.asarray(data.labels, dtype=np.int64)
    )


def load_split_uint8(
    dataset: str, split: str, data_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's pixels and labels as stored in the IDX files.

    Returns
    -------
    images : ndarray of uint8, shape (N, H, W)
    labels : ndarray of int64, shape (N,)
    """
    folder = _dataset_folder(dataset, split, data_dir)
    prefix = _SPLIT_PREFIXES[split]
    images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 \
            or len(images) != len(labels):
        raise ValueError(
            f"{folder}: expected uint8 images (N, H, W) and labels (N,), got {images.dtype} "
            f"images of shape {images.shape} and labels of shape {labels.shape}."
        )
    return images, labels.astype(np.int64)


def _dataset_folder(dataset: str, split: str, data_dir: str | Path | None) -> Path:
    info = get_dataset_info(dataset)
    if split not in _SPLIT_PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return Path(data_dir if data_dir is not None else info.default_dir)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"IDX file {stem}[.gz] not found in {folder}; pass data_dir= (or --data-dir) with the "
        "folder that contains the four IDX files."
    )
