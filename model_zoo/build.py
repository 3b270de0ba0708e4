"""Train, export, check and cache a zoo model, with a manifest beside the ONNX file."""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.datasets import get_dataset_info, load_split
from model_zoo.manifest import (
    MANIFEST_FORMAT,
    command_argv,
    file_sha256,
    hardware_summary,
    manifest_path,
    package_versions,
    read_manifest,
    utc_now,
    write_manifest,
)
from model_zoo.recipe import TrainConfig
from model_zoo.registry import get_entry

__all__ = ["build", "cache_root", "default_model_path", "evaluate_onnx", "reproduce_command"]

logger = logging.getLogger(__name__)

CACHE_ENV = "APPROXIFER_CACHE_DIR"
_EXPORT_CHECK_IMAGES = 64


def cache_root() -> Path:
    """Return the zoo's cache folder.

    ``$APPROXIFER_CACHE_DIR/zoo`` when that variable is set, else
    ``$XDG_CACHE_HOME/approxifer-onnx/zoo``, else ``~/.cache/approxifer-onnx/zoo``.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "zoo"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "approxifer-onnx" / "zoo"


def default_model_path(name: str, dataset: str) -> Path:
    """Return the cached ONNX path of zoo model ``name`` trained on ``dataset``."""
    return cache_root() / f"{name}-{dataset}" / "model.onnx"


def cached_model_path(name: str, dataset: str) -> Path | None:
    """Return the cached ONNX file of `name` trained on `dataset`, or None when it is not built."""
    path = default_model_path(name, dataset)
    return path if path.exists() else None


def evaluate_onnx(
    path: str | Path, inputs: np.ndarray, labels: np.ndarray, *, threads: int | None = None,
    batch_size: int = 500,
) -> float:
    """Return the top-1 accuracy of an ONNX classifier run by onnxruntime on the CPU.

    Parameters
    ----------
    path : str or Path
        Model with one float32 input (B, C, H, W) and logits (B, num_classes) as first output.
    inputs : ndarray of float32, shape (N, C, H, W)
    labels : ndarray of int, shape (N,)
    threads : int, optional
        onnxruntime intra-op threads; None lets onnxruntime choose.
    batch_size : int
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    predictions = []
    for start in range(0, len(inputs), batch_size):
        batch = np.ascontiguousarray(inputs[start:start + batch_size], dtype=np.float32)
        predictions.append(session.run(None, {input_name: batch})[0].argmax(axis=1))
    return float(np.mean(np.concatenate(predictions) == labels))


def reproduce_command(
    name: str, dataset: str, train_options: dict[str, Any], *,
    train_limit: int | None, output: Path | None, data_dir: Path | None, threads: int | None,
    weights: Path | None = None, pretrained: bool = False,
) -> str:
    """Return the ``python -m model_zoo build`` command line that rebuilds a model."""
    arguments = ["python", "-m", "model_zoo", "build", name, "--dataset", dataset]
    for key, value in train_options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            arguments += [flag, str(value)]
    if train_limit is not None:
        arguments += ["--train-limit", str(train_limit)]
    if threads is not None:
        arguments += ["--threads", str(threads)]
    if data_dir is not None:
        arguments += ["--data-dir", str(data_dir)]
    if output is not None:
        arguments += ["--output", str(output)]
    if weights is not None:
        arguments += ["--weights", str(weights)]
    if pretrained:
        arguments.append("--pretrained")
    return shlex.join(arguments)


def build(
    name: str,
    dataset: str = "fashion-mnist",
    *,
    output: str | Path | None = None,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    lr: float = TrainConfig.lr,
    seed: int = TrainConfig.seed,
    threads: int | None = None,
    data_dir: str | Path | None = None,
    train_limit: int | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    force: bool = False,
    progress: bool = True,
    **options,
) -> Path:
    """Return the path of a trained, exported and checked zoo model, training it if needed.

    A model whose manifest records the same recipe (architecture, dataset, hyper-parameters,
    seed and ``train_limit``) and whose file still has the recorded SHA-256 is returned as is.

    Parameters
    ----------
    name : str
        Registry name, see `model_zoo.list_models`.
    dataset : str
        Key of `model_zoo.datasets.DATASETS`.
    output : str or Path, optional
        ONNX file to write; defaults to `default_model_path`. The manifest is written beside it
        with the suffix ``.json``.
    epochs, batch_size, lr, seed, **options
        Training recipe, see `model_zoo.recipe.TrainConfig`.
    threads : int, optional
        ``torch.set_num_threads`` for training; not part of the recipe.
    data_dir : str or Path, optional
        File or folder the dataset's reader opens; defaults to the dataset's
        ``default_location``.
    train_limit : int, optional
        Train on the first ``train_limit`` training images only, in file order.
    weights : str or Path, optional
        A torch checkpoint for the network that `model_zoo.training.create_model` builds: a
        state dict saved with ``torch.save``, or a dict with one under ``"state_dict"`` or
        ``"model"``. It is loaded instead of training, then exported and checked.
    pretrained : bool
        Start training from timm's pretrained weights, which timm downloads on first use.
    force : bool
        Retrain even when a matching model exists.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    Path
        The ONNX file.
    """
    from model_zoo.export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from model_zoo.training import evaluate, train

    entry = get_entry(name)
    info = get_dataset_info(dataset)
    if weights is not None and pretrained:
        raise ValueError(
            "weights and pretrained both choose the starting weights; pass one of them."
        )
    if train_limit is not None and train_limit < 1:
        raise ValueError(f"train_limit must be >= 1 or None, got {train_limit!r}.")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **options)
    path = Path(output) if output is not None else default_model_path(name, dataset)
    recipe = _recipe(entry.to_dict(), dataset, config.to_dict(), train_limit)
    if weights is not None:
        recipe["weights_sha256"] = file_sha256(weights)
    if pretrained:
        recipe["pretrained"] = True

    if not force and _is_cached(path, recipe):
        logger.info("zoo model %s-%s found at %s; pass force=True to retrain", name, dataset, path)
        return path

    started = time.perf_counter()
    test_set = load_split(dataset, "test", data_dir)
    train_options = {k: v for k, v in config.to_dict().items()
                     if k not in ("epochs", "batch_size", "lr", "seed")}
    train_images = 0
    if weights is not None:
        result = _load_weights(entry, weights, info, threads)
    else:
        train_set = load_split(dataset, "train", data_dir)
        if train_limit is not None:
            train_set = type(train_set)(
                train_set.inputs[:train_limit], train_set.labels[:train_limit]
            )
        train_images = len(train_set.labels)
        result = train(
            entry, train_set, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
            seed=config.seed, threads=threads, progress=progress, num_classes=info.num_classes,
            pretrained=pretrained, **train_options,
        )

    torch_accuracy = evaluate(result.model, test_set.inputs, test_set.labels)
    check = export_onnx(
        result.model, path, info.image_size,
        check_inputs=test_set.inputs[:_EXPORT_CHECK_IMAGES],
    )
    onnx_accuracy = evaluate_onnx(path, test_set.inputs, test_set.labels, threads=threads)
    if abs(onnx_accuracy - torch_accuracy) * len(test_set.labels) > 2:
        logger.warning(
            "%s: onnxruntime accuracy %.4f differs from torch accuracy %.4f by more than "
            "2 test images", path, onnx_accuracy, torch_accuracy,
        )

    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "architecture": entry.arch,
        "source": entry.source,
        "dataset": dataset,
        "num_classes": info.num_classes,
        "input": {"name": INPUT_NAME, "shape": ["batch", *info.image_size], "dtype": "float32",
                  "preprocessing": f"pixels / {info.pixel_max}, no normalisation"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", info.num_classes],
                   "meaning": "logits"},
        "test_accuracy": onnx_accuracy,
        "test_accuracy_runtime": "onnxruntime",
        "torch_test_accuracy": torch_accuracy,
        "test_images": int(len(test_set.labels)),
        "train_images": train_images,
        "weights": None if weights is None else str(weights),
        "pretrained": pretrained,
        "seed": config.seed,
        "epochs": config.epochs,
        "hyperparameters": config.to_dict(),
        "recipe": recipe,
        "history": result.history,
        "export_check": check.to_dict(),
        "command": reproduce_command(
            name, dataset, {k: v for k, v in config.to_dict().items()},
            train_limit=train_limit, output=Path(output) if output is not None else None,
            data_dir=Path(data_dir) if data_dir is not None else None, threads=threads,
            weights=Path(weights) if weights is not None else None, pretrained=pretrained,
        ),
        "argv": command_argv(),
        "versions": package_versions(),
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
        "date": utc_now(),
        "train_seconds": round(result.wall_time_s, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "hardware": hardware_summary(threads),
    }
    write_manifest(path, manifest)
    logger.info(
        "built %s: test accuracy %.4f (onnxruntime), manifest %s",
        path, onnx_accuracy, manifest_path(path),
    )
    return path


def _load_weights(entry, weights: str | Path, info, threads: int | None):
    """Build ``entry``'s network and load a local checkpoint into it, in place of training."""
    import torch

    from model_zoo.training import TrainResult, create_model

    if threads is not None:
        torch.set_num_threads(threads)
    model = create_model(entry, info.num_classes, info.image_size)
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    try:
        model.load_state_dict(checkpoint)
    except RuntimeError as error:
        raise ValueError(
            f"{weights} does not fit zoo model {entry.name!r} with {info.num_classes} classes "
            f"and images {info.image_size}: {error}"
        ) from None
    model.eval()
    logger.info("loaded %s into %s instead of training", weights, entry.name)
    return TrainResult(model=model, history=[], wall_time_s=0.0, steps=0)


def _recipe(model: dict, dataset: str, train_config: dict, train_limit: int | None) -> dict:
    # A JSON round trip turns tuples into lists, so a fresh recipe compares equal to a stored one.
    return json.loads(json.dumps(
        {"model": model, "dataset": dataset, "train": train_config, "train_limit": train_limit}
    ))


def _is_cached(path: Path, recipe: dict) -> bool:
    manifest = read_manifest(path)
    if manifest is None or not path.is_file():
        return False
    if manifest.get("recipe") != recipe:
        logger.info("zoo model at %s was built with another recipe; retraining", path)
        return False
    if manifest.get("sha256") != file_sha256(path):
        logger.warning("zoo model at %s does not match its manifest's sha256; retraining", path)
        return False
    return True
