"""Read evaluation data and turn it into float32 model inputs.

Supported sources, each read by `load_dataset`:

- a folder with IDX files (MNIST, Fashion-MNIST), gzipped or not;
- a single IDX images file, with its labels file beside it when there is one;
- a ``.npy`` array of images, or a ``.npz`` archive of images and labels;
- a folder of PNG or JPEG images, labelled by class sub-folder when it has them.

`load_dataset` and `load_idx_folder` return a `Dataset` whose inputs went through `preprocess`:
uint8 pixels scaled to [0, 1], an optional per-channel ``(x - mean) / std``, and images in NCHW
order. `save_npz` writes a small slice back as uint8 for examples and tests.
"""

from __future__ import annotations

import gzip
import logging
import math
import numbers
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from approxifer_onnx.exceptions import DataError

__all__ = [
    "DEFAULT_FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "IMAGE_SUFFIXES",
    "Dataset",
    "default_data_path",
    "load_dataset",
    "load_idx_folder",
    "preprocess",
    "read_idx",
    "save_npz",
]

logger = logging.getLogger(__name__)

#: Install folder of the four IDX files of the Debian and Ubuntu package dataset-fashion-mnist.
DEFAULT_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

#: Fashion-MNIST class names, indexed by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: File suffixes read from image folders (case-insensitive). Other files are ignored.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

SPLITS = ("test", "train")
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_COUNTS = (1, 3)

# IDX element types by type code (third byte of the magic number). Multi-byte values are
# big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# File name prefix of each split in the MNIST distribution.
_IDX_SPLIT_PREFIXES = {"test": "t10k", "train": "train"}

_NPZ_INPUT_KEYS = ("x", "images", "inputs")
_NPZ_LABEL_KEYS = ("y", "labels")

# Luminance weights of ITU-R BT.601, the ones Pillow uses to convert RGB to grayscale ("L").
_LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(eq=False, repr=False)
class Dataset:
    """Preprocessed model inputs with their labels.

    Parameters
    ----------
    inputs : numpy.ndarray of float32, shape (N, C, H, W) or (N, *shape)
        Model inputs, one row per example. Images are in NCHW order, other arrays keep their
        shape.
    labels : numpy.ndarray of int64, shape (N,), or None
        Class index of each example, or None when the source has no labels.
    source : str
        The path or paths read, joined by ", ".
    name : str
        Short name for logs and reports, such as ``"fashion-mnist-test"``.
    class_names : tuple of str, optional
        Name of each class, indexed by label, when the source names them.
    """

    inputs: np.ndarray
    labels: np.ndarray | None
    source: str
    name: str
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.inputs, np.ndarray):
            raise TypeError(
                f"inputs must be a numpy array, got {type(self.inputs).__name__}; "
                "wrap it with numpy.asarray"
            )
        if not np.issubdtype(self.inputs.dtype, np.floating):
            raise TypeError(
                f"inputs must be floating point, got dtype {self.inputs.dtype}; "
                "convert images with approxifer_onnx.data.preprocess"
            )
        if self.inputs.ndim < 1:
            raise ValueError("inputs must have a leading example axis, got a 0-d array")
        self.inputs = self.inputs.astype(np.float32, copy=False)

        if self.class_names is not None:
            self.class_names = tuple(str(name) for name in self.class_names)
        if self.labels is not None:
            self.labels = _validate_labels(self.labels, len(self.inputs), self.class_names)

    def __len__(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        labels = "None" if self.labels is None else f"int64{self.labels.shape}"
        return (
            f"Dataset(name={self.name!r}, inputs={self.inputs.dtype}{self.inputs.shape}, "
            f"labels={labels}, source={self.source!r})"
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one example, ``inputs.shape[1:]``."""
        return self.inputs.shape[1:]

    def subset(self, indices) -> Dataset:
        """Return the examples at `indices`, in that order.

        Parameters
        ----------
        indices : array_like of int, shape (M,), or of bool, shape (N,)
            Example indices in ``0 .. N-1``, or a boolean mask over the examples.

        Returns
        -------
        Dataset
            A new dataset with copies of the selected rows.
        """
        positions = np.asarray(indices)
        if positions.size == 0:
            positions = positions.astype(np.int64)

        if positions.dtype == np.bool_:
            if positions.shape != (len(self),):
                raise ValueError(
                    f"a boolean mask must have shape ({len(self)},) to match the dataset, "
                    f"got shape {positions.shape}"
                )
        elif np.issubdtype(positions.dtype, np.integer):
            if positions.ndim != 1:
                raise ValueError(f"indices must be one-dimensional, got shape {positions.shape}")
            out_of_range = positions[(positions < 0) | (positions >= len(self))]
            if out_of_range.size:
                raise ValueError(
                    f"index {out_of_range[0]} is out of range for a dataset of {len(self)} "
                    f"examples; indices must lie in 0..{len(self) - 1}"
                )
        else:
            raise TypeError(
                f"indices must be integers or a boolean mask, got dtype {positions.dtype}"
            )

        labels = None if self.labels is None else self.labels[positions]
        return Dataset(
            inputs=self.inputs[positions],
            labels=labels,
            source=self.source,
            name=self.name,
            class_names=self.class_names,
        )

    def head(self, n: int) -> Dataset:
        """Return the first `n` examples, or all of them when there are fewer than `n`."""
        count = _validate_count("n", n, minimum=0)
        return self.subset(np.arange(min(count, len(self))))


def _validate_labels(labels, count: int, class_names) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be integer class indices, got dtype {labels.dtype}; "
            "convert them with labels.astype(numpy.int64)"
        )
    if labels.shape != (count,):
        raise ValueError(
            f"labels must have shape ({count},) to match the {count} inputs, "
            f"got shape {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, got {labels.min()}")
    if class_names is not None and labels.size and labels.max() >= len(class_names):
        raise ValueError(
            f"label {labels.max()} has no class name: only {len(class_names)} class_names given"
        )
    return labels.astype(np.int64, copy=False)


# ---------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an array from an IDX file, the format of the MNIST distribution.

    The file starts with a 4-byte magic number: two zero bytes, a type code and the number of
    dimensions. Then come the dimensions as big-endian 32-bit integers and the values in C
    order. Gzipped files are recognised by their first two bytes (1f 8b), whatever their name.

    Parameters
    ----------
    path : str or os.PathLike
        The IDX file, plain or gzipped.

    Returns
    -------
    numpy.ndarray, shape as declared in the header
        The values in native byte order: uint8 (type 0x08), int8 (0x09), int16 (0x0B),
        int32 (0x0C), float32 (0x0D) or float64 (0x0E).

    Raises
    ------
    DataError
        If the file is not valid gzip, has no IDX magic number, an unknown type code, or a
        size that does not match its header.
    """
    path = Path(path)
    content = _read_maybe_gzipped(path)

    if len(content) < 4:
        raise DataError(
            f"{path}: truncated IDX header: expected at least 4 bytes, got {len(content)}"
        )
    if content[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: bad magic number {content[:4].hex(' ')}, "
            "expected the first two bytes to be 00 00"
        )

    type_code, ndim = content[2], content[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02X}; known codes: {known}")
    if ndim == 0:
        raise DataError(f"{path}: the IDX header declares 0 dimensions, expected at least 1")

    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(
            f"{path}: truncated IDX header: expected {header_size} bytes for {ndim} dimensions, "
            f"got {len(content)}"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])

    dtype = _IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    received = len(content) - header_size
    if received < expected:
        raise DataError(
            f"{path}: truncated IDX data: expected {expected} bytes for shape {shape} of "
            f"{dtype.name}, got {received}"
        )
    if received > expected:
        raise DataError(
            f"{path}: {received - expected} unexpected bytes after the IDX data: expected "
            f"{expected} bytes for shape {shape} of {dtype.name}, got {received}"
        )

    values = np.frombuffer(content, dtype=dtype, count=math.prod(shape), offset=header_size)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def _read_maybe_gzipped(path: Path) -> bytes:
    content = path.read_bytes()
    if content[:2] != _GZIP_MAGIC:
        return content
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: invalid gzip data: {error}") from error


def _idx_file_names(split: str, kind: str) -> list[str]:
    """Return the accepted names of the `kind` ("images" or "labels") file of `split`."""
    prefix = _IDX_SPLIT_PREFIXES[split]
    rank = 3 if kind == "images" else 1
    stems = [f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"]
    return [stem + suffix for stem in stems for suffix in ("", ".gz")]


def _find_idx_file(folder: Path, split: str, kind: str) -> Path | None:
    for name in _idx_file_names(split, kind):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _read_idx_pair(images_path: Path, labels_path: Path | None):
    """Read an IDX images file and its labels file, and check that their counts match."""
    images = read_idx(images_path)
    if images.ndim < 2:
        raise DataError(
            f"{images_path}: expected images with at least 2 dimensions, got shape {images.shape}"
        )
    if labels_path is None:
        return images, None

    labels = read_idx(labels_path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_path}: expected a one-dimensional integer labels file, "
            f"got shape {labels.shape} of {labels.dtype}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"image and label counts differ: {images_path} contains {len(images)} images but "
            f"{labels_path} contains {len(labels)} labels; both files must come from the same split"
        )
    return images, labels


def _sibling_labels_file(images_path: Path) -> Path | None:
    """Return the labels file beside an IDX images file, such as t10k-labels-idx1-ubyte.gz."""
    name = images_path.name
    if "images" not in name:
        return None
    stem = name.replace("images", "labels").replace("idx3", "idx1").removesuffix(".gz")
    for candidate in (images_path.with_name(stem), images_path.with_name(stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_folder(folder: Path, split: str):
    images_path = _find_idx_file(folder, split, "images")
    if images_path is None:
        other = SPLITS[1 - SPLITS.index(split)]
        hint = (
            f"; it has the {other!r} split, pass split={other!r}"
            if _find_idx_file(folder, other, "images")
            else ""
        )
        raise DataError(
            f"{folder}: no IDX images file for split={split!r}, expected one of "
            f"{', '.join(_idx_file_names(split, 'images'))}{hint}"
        )

    labels_path = _find_idx_file(folder, split, "labels")
    if labels_path is None:
        logger.warning("%s: no IDX labels file for split=%r; reading images only", folder, split)
    images, labels = _read_idx_pair(images_path, labels_path)

    sources = [images_path] if labels_path is None else [images_path, labels_path]
    class_names = FASHION_MNIST_CLASSES if "fashion" in folder.name.lower() else None
    return images, labels, sources, class_names


def load_idx_folder(
    folder: str | os.PathLike,
    split: str = "test",
    *,
    scale: bool = True,
    mean=None,
    std=None,
    limit: int | None = None,
) -> Dataset:
    """Load one split of an MNIST-style folder of IDX files.

    The test split is ``t10k-images-idx3-ubyte`` with ``t10k-labels-idx1-ubyte``, the train
    split starts with ``train-`` instead. Each name may also be spelt ``t10k-images.idx3-ubyte``
    and may end in ``.gz``. A folder whose name contains "fashion" gets the Fashion-MNIST class
    names.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder with the IDX files.
    split : {"test", "train"}
        Which pair of files to read.
    scale, mean, std
        Passed to `preprocess`.
    limit : int, optional
        Keep only the first `limit` examples.

    Returns
    -------
    Dataset
        Inputs of shape (N, 1, H, W) and int64 labels of shape (N,), or no labels when the
        folder has no labels file for the split.
    """
    _validate_split(split)
    if limit is not None:
        limit = _validate_count("limit", limit, minimum=1)
    folder = _resolve_path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is not a folder; load_idx_folder needs the folder of IDX files"
        )

    images, labels, sources, class_names = _read_idx_folder(folder, split)
    return _build_dataset(
        images,
        labels,
        sources,
        name=f"{folder.name}-{split}",
        class_names=class_names,
        scale=scale,
        mean=mean,
        std=std,
        limit=limit,
    )


# ---------------------------------------------------------------------------------------------
# NumPy files


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the .npy file: {error}") from error


def _load_npz(path: Path, split: str):
    """Read images, labels and optional class names from a .npz archive."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the .npz file: {error}") from error

    with archive:
        keys = list(archive.files)
        # Keras' mnist.npz names its arrays x_train, y_train, x_test and y_test.
        input_keys = [key for key in (*_NPZ_INPUT_KEYS, f"x_{split}") if key in keys]
        label_keys = [key for key in (*_NPZ_LABEL_KEYS, f"y_{split}") if key in keys]

        if not input_keys:
            raise DataError(
                f"{path}: no images array found; expected one of the keys "
                f"{', '.join((*_NPZ_INPUT_KEYS, f'x_{split}'))}, found {', '.join(keys) or 'none'}"
            )
        if len(input_keys) > 1 or len(label_keys) > 1:
            raise DataError(
                f"{path}: ambiguous arrays: found the keys {', '.join(keys)}; keep one images "
                f"array ({', '.join(_NPZ_INPUT_KEYS)}) and at most one labels array "
                f"({', '.join(_NPZ_LABEL_KEYS)})"
            )

        try:
            images = archive[input_keys[0]]
            labels = archive[label_keys[0]] if label_keys else None
            class_names = tuple(archive["class_names"].tolist()) if "class_names" in keys else None
            name = str(archive["name"]) if "name" in keys else None
        except (OSError, ValueError, zlib.error) as error:
            raise DataError(f"{path}: cannot read an array of the .npz file: {error}") from error

    if labels is not None:
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{path}: the labels array {label_keys[0]!r} has dtype {labels.dtype}, "
                "expected integer class indices"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{path}: the labels array {label_keys[0]!r} has shape {labels.shape}, expected "
                f"({len(images)},) to match the images array {input_keys[0]!r}"
            )
    return images, labels, class_names, name


def save_npz(path: str | os.PathLike, data) -> Path:
    """Write images and labels to a compressed .npz file that `load_dataset` reads back.

    Images that are uint8, or floats that are exact multiples of 1/255 in [0, 1] (the inputs of
    a `Dataset` loaded with ``scale=True`` and no mean or std), are stored as uint8, which keeps
    example files small. Other float images are stored as float32.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. It must end in ``.npz``.
    data : Dataset, numpy.ndarray, or tuple (images, labels)
        A dataset, an images array of shape (N, ...), or images with labels of shape (N,) or
        None.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path={str(path)!r} must end in .npz, the suffix load_dataset reads")

    class_names = None
    name = None
    if isinstance(data, Dataset):
        images, labels, class_names, name = data.inputs, data.labels, data.class_names, data.name
    elif isinstance(data, np.ndarray):
        images, labels = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = np.asarray(data[0]), data[1]
    else:
        raise TypeError(
            f"data must be a Dataset, an images array or a tuple (images, labels), "
            f"got {type(data).__name__}"
        )

    arrays = {"images": _compact_images(images)}
    if labels is not None:
        arrays["labels"] = _validate_labels(labels, len(images), class_names)
    if class_names is not None:
        arrays["class_names"] = np.array(class_names, dtype=np.str_)
    if name is not None:
        arrays["name"] = np.array(name, dtype=np.str_)

    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)
    logger.info("wrote %d images of dtype %s to %s", len(images), arrays["images"].dtype, path)
    return path


def _compact_images(images: np.ndarray) -> np.ndarray:
    """Return `images` as uint8 when no value is lost, else as float32."""
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"images must be uint8 or floating point, got dtype {images.dtype}")

    levels = np.asarray(images, dtype=np.float64) * 255.0
    rounded = np.rint(levels)
    # float32 stores k/255 with a relative error of about 6e-8, so 1e-4 of a level is ample.
    if np.all((rounded >= 0) & (rounded <= 255) & (np.abs(levels - rounded) <= 1e-4)):
        return rounded.astype(np.uint8)
    return images.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Image folders


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(
            "reading image folders needs Pillow; install it with `pip install pillow` "
            "or `pip install approxifer-onnx[dev]`"
        ) from error
    return Image


def _is_image_file(path: Path) -> bool:
    if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    return path.is_file()


def _list_image_folder(folder: Path):
    """Return the image files of `folder` in reading order, their labels and the class names.

    Images directly in `folder` have no labels. Otherwise each sub-folder is a class, classes
    are numbered in sorted order, and the images of a class (searched recursively) are sorted
    by their path.
    """
    entries = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    loose_images = [path for path in entries if _is_image_file(path)]
    class_folders = [path for path in entries if path.is_dir()]

    class_files = {
        class_folder: sorted(path for path in class_folder.rglob("*") if _is_image_file(path))
        for class_folder in class_folders
    }
    has_classes = any(class_files.values())

    if loose_images and has_classes:
        raise DataError(
            f"{folder}: contains both images ({loose_images[0].name}, ...) and class "
            "sub-folders with images; move every image into its class sub-folder, or keep "
            "all images at the top level for unlabelled data"
        )
    if loose_images:
        return loose_images, None, None
    if not has_classes:
        raise DataError(
            f"{folder}: no IDX files and no images ({', '.join(IMAGE_SUFFIXES)}) found, "
            "neither at the top level nor in class sub-folders"
        )

    files, labels = [], []
    for label, class_folder in enumerate(class_folders):
        if not class_files[class_folder]:
            logger.warning("%s: class folder has no images", class_folder)
        files.extend(class_files[class_folder])
        labels.extend([label] * len(class_files[class_folder]))
    class_names = tuple(class_folder.name for class_folder in class_folders)
    return files, np.array(labels, dtype=np.int64), class_names


_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _read_image(path: Path, mode: str, size: tuple[int, int] | None, image_module) -> np.ndarray:
    """Read one image as a uint8 array of shape (H, W) for mode "L" or (H, W, 3) for "RGB"."""
    try:
        with image_module.open(path) as image:
            image.load()
            if image.mode.startswith("I;16"):
                # Pillow's convert("L") clips 16-bit values at 255, so take the high byte instead.
                image = image_module.fromarray(
                    (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                )
            # NOTE: convert drops an alpha channel without blending it over a background.
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), image_module.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        # Pillow raises UnidentifiedImageError (an OSError) for unknown formats, OSError for
        # truncated files, and SyntaxError from some plugins for corrupt files.
        raise DataError(f"{path}: cannot read the image: {error}") from error


def _read_image_folder(folder: Path, channels: int | None, size, limit: int | None):
    image_module = _import_pillow()
    files, labels, class_names = _list_image_folder(folder)
    if limit is not None:
        files = files[:limit]
        labels = None if labels is None else labels[:limit]

    if channels is None:
        modes = {_image_mode(path, image_module) for path in files}
        channels = 1 if modes <= _GRAYSCALE_MODES else 3
    mode = "L" if channels == 1 else "RGB"

    images = []
    for path in files:
        image = _read_image(path, mode, size, image_module)
        if images and image.shape != images[0].shape:
            raise DataError(
                f"{path}: image of {image.shape[1]}x{image.shape[0]} pixels (width x height) "
                f"differs from {images[0].shape[1]}x{images[0].shape[0]} of {files[0]}; "
                "pass size=(height, width) to resize every image"
            )
        images.append(image)

    stacked = np.stack(images)
    if channels == 3:
        stacked = stacked.transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    return stacked, labels, files, class_names


def _image_mode(path: Path, image_module) -> str:
    try:
        with image_module.open(path) as image:
            return image.mode
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read the image: {error}") from error


# ---------------------------------------------------------------------------------------------
# Preprocessing


def preprocess(
    images: np.ndarray, *, scale: bool = True, mean=None, std=None, layout: str = "NCHW"
) -> np.ndarray:
    """Convert images to float32 model inputs in NCHW order.

    First, uint8 values are divided by 255 when `scale` is true. Next, (N, H, W) grayscale
    images get a channel axis, and (N, H, W, C) images with ``layout="NHWC"`` are transposed
    to (N, C, H, W). Last, ``(x - mean) / std`` is applied per channel. Arrays that are not
    3-D or 4-D keep their shape and take only a scalar `mean` and `std`.

    Parameters
    ----------
    images : numpy.ndarray of uint8 or float
        uint8 pixels in 0..255, or float values that are used as they are. Shape (N, H, W),
        (N, C, H, W), (N, H, W, C), or (N, *shape) for data that are not images.
    scale : bool
        Divide uint8 pixels by 255. Float images are never rescaled.
    mean, std : float or sequence of float, length C, optional
        Per-channel normalisation in the units after scaling, such as ``mean=0.2860,
        std=0.3530`` for Fashion-MNIST. A missing `mean` is 0 and a missing `std` is 1.
    layout : {"NCHW", "NHWC"}
        Axis order of 4-D `images`. The output is always NCHW.

    Returns
    -------
    numpy.ndarray of float32, shape (N, C, H, W), or (N, *shape) for other ranks
    """
    inputs = _to_float_nchw(images, scale=scale, layout=layout)
    return _normalize(inputs, mean, std)


def _to_float_nchw(images, *, scale: bool, layout: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if not isinstance(scale, (bool, np.bool_)):
        raise TypeError(f"scale must be True or False, got {scale!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid; expected one of {', '.join(LAYOUTS)}")
    if images.ndim < 1:
        raise ValueError("images must have a leading example axis, got a 0-d array")

    if images.dtype == np.uint8:
        inputs = images.astype(np.float32)
        if scale:
            inputs /= 255.0
    elif np.issubdtype(images.dtype, np.floating):
        inputs = images.astype(np.float32)
    else:
        raise TypeError(
            f"images must be uint8 pixels or floating point, got dtype {images.dtype}; "
            "convert them with images.astype(numpy.uint8) or images.astype(numpy.float32)"
        )

    if inputs.ndim == 3:
        inputs = inputs[:, np.newaxis]
    elif inputs.ndim == 4 and layout == "NHWC":
        inputs = inputs.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(inputs)


def _channel_values(name: str, value, channels: int | None, shape) -> np.ndarray | float:
    """Return `value` as a scalar or as an array that broadcasts over NCHW channels."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = np.array([float(value)])
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        try:
            values = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            message = f"{name}={value!r} must be a number or a sequence of numbers"
            raise TypeError(message) from error
    else:
        raise TypeError(f"{name}={value!r} must be a number or a sequence of numbers")

    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}={value!r} must be finite")
    if len(values) == 1:
        return float(values[0])
    if channels is None:
        raise ValueError(
            f"{name}={value!r} has {len(values)} values, but inputs of shape {shape} have no "
            "channel axis; pass a single number"
        )
    if len(values) != channels:
        raise ValueError(
            f"{name}={value!r} has {len(values)} values, but the images have {channels} "
            f"channels (shape {shape}); pass one value per channel or a single number"
        )
    return values.reshape(1, channels, 1, 1)


def _normalize(inputs: np.ndarray, mean, std) -> np.ndarray:
    if mean is None and std is None:
        return inputs
    channels = inputs.shape[1] if inputs.ndim == 4 else None

    if std is not None:
        std_values = _channel_values("std", std, channels, inputs.shape)
        if np.any(np.asarray(std_values) <= 0):
            raise ValueError(f"std={std!r} must be positive for every channel")
    else:
        std_values = 1.0
    mean_values = 0.0 if mean is None else _channel_values("mean", mean, channels, inputs.shape)

    return ((inputs - mean_values) / std_values).astype(np.float32)


def _match_channels(inputs: np.ndarray, channels: int | None) -> np.ndarray:
    """Repeat a gray channel to make RGB, or reduce RGB to luminance, on NCHW inputs."""
    if channels is None or (inputs.ndim == 4 and inputs.shape[1] == channels):
        return inputs
    if inputs.ndim != 4:
        raise ValueError(
            f"channels={channels} needs images, but the inputs have shape {inputs.shape[1:]}; "
            "pass channels=None for inputs that are not images"
        )
    if inputs.shape[1] == 1 and channels == 3:
        return np.repeat(inputs, 3, axis=1)
    if inputs.shape[1] == 3 and channels == 1:
        gray = np.einsum("nchw,c->nhw", inputs, _LUMINANCE_WEIGHTS)
        return gray[:, np.newaxis].astype(np.float32)
    raise ValueError(
        f"channels={channels} cannot be made from images with {inputs.shape[1]} channels; "
        "only 1 <-> 3 conversions are supported"
    )


def _resize(inputs: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize NCHW float inputs with Pillow's bilinear filter, channel by channel."""
    if size is None or (inputs.ndim == 4 and inputs.shape[2:] == size):
        return inputs
    if inputs.ndim != 4:
        raise ValueError(
            f"size={size} needs images, but the inputs have shape {inputs.shape[1:]}; "
            "pass size=None for inputs that are not images"
        )
    image_module = _import_pillow()
    height, width = size
    resized = np.empty((*inputs.shape[:2], height, width), dtype=np.float32)
    for index in np.ndindex(*inputs.shape[:2]):
        channel = image_module.fromarray(inputs[index], mode="F")
        resized[index] = np.asarray(
            channel.resize((width, height), image_module.Resampling.BILINEAR)
        )
    return resized


# ---------------------------------------------------------------------------------------------
# Dispatch


def default_data_path() -> Path | None:
    """Return `DEFAULT_FASHION_MNIST` when that folder exists, else None."""
    return DEFAULT_FASHION_MNIST if DEFAULT_FASHION_MNIST.is_dir() else None


def _validate_split(split) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is invalid; expected one of {', '.join(SPLITS)}")


def _validate_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value} is invalid; it must be at least {minimum}")
    return int(value)


def _validate_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"size={size!r} must be (height, width) or a single integer")
    height = _validate_count("size height", size[0], minimum=1)
    width = _validate_count("size width", size[1], minimum=1)
    return height, width


def load_dataset(
    path: str | os.PathLike | None = None,
    *,
    split: str = "test",
    scale: bool = True,
    mean=None,
    std=None,
    layout: str = "NCHW",
    channels: int | None = None,
    size=None,
    limit: int | None = None,
) -> Dataset:
    """Load a dataset from whatever `path` is and preprocess its images.

    Parameters
    ----------
    path : str or os.PathLike, optional
        What to read, recognised in this order:

        - a folder with IDX files, see `load_idx_folder`;
        - any other folder, read as PNG or JPEG images, with one sub-folder per class for
          labelled data;
        - a ``.npy`` images array;
        - a ``.npz`` archive with an images array (key ``x``, ``images`` or ``inputs``) and
          optionally a labels array (``y`` or ``labels``);
        - any other file, read as an IDX images file. Its labels file is read too when it
          lies beside it.

        None reads `DEFAULT_FASHION_MNIST`.
    split : {"test", "train"}
        The split of an IDX folder, or of a .npz archive with keys such as ``x_test``.
    scale, mean, std
        Passed to `preprocess`. `mean` and `std` apply to the channels after `channels`.
    layout : {"NCHW", "NHWC"}
        Axis order of 4-D arrays in .npy and .npz files. IDX files and images have a known
        layout, so it does not apply to them.
    channels : {1, 3}, optional
        Convert images to grayscale (1) or RGB (3). By default an image folder is read as
        grayscale when every image is, and arrays keep their channels.
    size : int or (int, int), optional
        Resize every image to (height, width) with a bilinear filter. Without it, the images
        of a folder must all have the same size.
    limit : int, optional
        Keep only the first `limit` examples. Image folders list classes in sorted order, so
        this can cut whole classes.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        If `path` does not exist, or is None and the default Fashion-MNIST folder is missing.
    DataError
        If a file is malformed or files disagree with each other.
    """
    # Check every option before reading anything, so a typo fails fast on a large dataset.
    _validate_split(split)
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid; expected one of {', '.join(LAYOUTS)}")
    if channels is not None and (isinstance(channels, bool) or channels not in CHANNEL_COUNTS):
        raise ValueError(
            f"channels={channels!r} is invalid; expected 1 (grayscale), 3 (RGB) or None"
        )
    size = _validate_size(size)
    if limit is not None:
        limit = _validate_count("limit", limit, minimum=1)

    path = _resolve_path(path)
    name = path.stem if path.is_file() else path.name
    class_names = None

    if path.is_dir() and _looks_like_idx_folder(path):
        images, labels, sources, class_names = _read_idx_folder(path, split)
        name = f"{path.name}-{split}"
    elif path.is_dir():
        images, labels, sources, class_names = _read_image_folder(path, channels, size, limit)
        layout = "NCHW"
    elif path.suffix == ".npy":
        images, labels, sources = _load_npy(path), None, [path]
    elif path.suffix == ".npz":
        images, labels, class_names, stored_name = _load_npz(path, split)
        sources = [path]
        name = stored_name or name
    else:
        labels_path = _sibling_labels_file(path)
        images, labels = _read_idx_pair(path, labels_path)
        sources = [path] if labels_path is None else [path, labels_path]
        name = path.name.removesuffix(".gz")

    return _build_dataset(
        images,
        labels,
        sources,
        name=name,
        class_names=class_names,
        scale=scale,
        mean=mean,
        std=std,
        layout=layout,
        channels=channels,
        size=size,
        limit=limit,
    )


def _build_dataset(
    images: np.ndarray,
    labels: np.ndarray | None,
    sources: list[Path],
    *,
    name: str,
    class_names,
    scale: bool,
    mean,
    std,
    layout: str = "NCHW",
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    limit: int | None = None,
) -> Dataset:
    """Cut raw images to `limit`, preprocess them and wrap them in a Dataset."""
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]

    inputs = _to_float_nchw(images, scale=scale, layout=layout)
    inputs = _match_channels(inputs, channels)
    inputs = _resize(inputs, size)
    inputs = _normalize(inputs, mean, std)

    dataset = Dataset(
        inputs=inputs,
        labels=labels,
        source=", ".join(str(source) for source in sources),
        name=name,
        class_names=class_names,
    )
    logger.info(
        "loaded %d examples of shape %s from %s", len(dataset), dataset.sample_shape, dataset.source
    )
    return dataset


def _resolve_path(path) -> Path:
    if path is None:
        default = default_data_path()
        if default is None:
            raise FileNotFoundError(
                f"no data path given and the default Fashion-MNIST folder {DEFAULT_FASHION_MNIST} "
                "is missing; install it with `apt-get install dataset-fashion-mnist` on "
                "Debian or Ubuntu, or pass a data path (--data on the command line)"
            )
        return default

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    return path


def _looks_like_idx_folder(folder: Path) -> bool:
    return any(_find_idx_file(folder, split, "images") for split in SPLITS)
