"""Click commands of the model zoo, shared by ``python -m model_zoo`` and ``approxifer-onnx zoo``."""

from __future__ import annotations

import functools
from pathlib import Path

import click
import numpy as np

from model_zoo.datasets import DATASETS, load_split_uint8
from model_zoo.recipe import TrainConfig
from model_zoo.registry import get_entry, list_models

__all__ = ["build_command", "list_command", "test_slice_command"]

_DEFAULTS = TrainConfig()
# Errors a user causes with a bad name, file or option: shown as one line, exit status 1.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, KeyError)


def _report_user_errors(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _USER_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise click.ClickException(str(message)) from error

    return wrapper


@click.command("list")
@click.argument("pattern", default="*")
@click.option("--datasets", "show_datasets", is_flag=True,
              help="List the datasets instead of the models.")
def list_command(pattern: str, show_datasets: bool) -> None:
    """List the models (or datasets) whose names match PATTERN (shell wildcards)."""
    if show_datasets:
        import fnmatch

        for name in sorted(DATASETS):
            if fnmatch.fnmatchcase(name, pattern):
                info = DATASETS[name]
                shape = "x".join(map(str, info.image_size))
                click.echo(f"{name:<24} {shape:<12} {info.description}")
        return
    for name in list_models(pattern):
        entry = get_entry(name)
        click.echo(f"{name:<24} {entry.source:<12} {entry.description}")


@click.command("build")
@click.argument("name")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist",
              show_default=True, help="Training and test data.")
@click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.epochs,
              show_default=True, help="Passes over the training set.")
@click.option("--batch-size", type=click.IntRange(min=1), default=_DEFAULTS.batch_size,
              show_default=True, help="Images per optimiser step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS.lr,
              show_default=True, help="Peak learning rate (linear warm-up, then cosine decay).")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True,
              help="Seed of the initialisation, shuffling and augmentation.")
@click.option("--weight-decay", type=click.FloatRange(min=0), show_default=True,
              default=_DEFAULTS.weight_decay,
              help="Weight decay of the weight tensors (AdamW: decoupled, SGD: L2).")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), show_default=True,
              default=_DEFAULTS.optimizer, help="AdamW, or SGD with Nesterov momentum.")
@click.option("--label-smoothing", type=click.FloatRange(min=0, max=1, max_open=True),
              default=_DEFAULTS.label_smoothing, show_default=True,
              help="Label smoothing of the cross-entropy loss.")
@click.option("--augment/--no-augment", default=_DEFAULTS.augment, show_default=True,
              help="Random shifts of up to 2 pixels and horizontal flips.")
@click.option("--warmup-fraction", type=click.FloatRange(min=0, max=1, min_open=True,
              max_open=True), default=_DEFAULTS.warmup_fraction, show_default=True,
              help="Fraction of the steps that raise the learning rate to --lr.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads for training [default: torch's choice].")
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=None,
              help="File or folder of the dataset [default: its default location, see "
                   "'list --datasets'].")
@click.option("--train-limit", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images only.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Local torch checkpoint (state dict) to load instead of training.")
@click.option("--pretrained", is_flag=True,
              help="Start training from timm's pretrained weights; timm downloads them, so "
                   "this needs network access the first time.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write [default: the cache folder].")
@click.option("--force", is_flag=True, help="Retrain even if a matching model exists.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@_report_user_errors
def build_command(name: str, no_progress: bool, **options) -> None:
    """Train NAME, export it to ONNX, check it and print the file's path."""
    from model_zoo.build import build

    try:
        get_entry(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="NAME") from None
    path = build(name, progress=not no_progress, **options)
    click.echo(str(path))


@click.command("test-slice")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist",
              show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Number of test images, taken from the start of the test split.")
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=None,
              help="File or folder of the dataset [default: its default location].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .npz file to write.")
@_report_user_errors
def test_slice_command(dataset: str, count: int, data_dir: Path | None, output: Path) -> None:
    """Save the first COUNT test images (uint8) and labels (int64) to a compressed .npz."""
    images, labels = load_split_uint8(dataset, "test", data_dir)
    if count > len(images):
        raise click.BadParameter(
            f"--count must be at most the {len(images)} images of the {dataset} test split, "
            f"got {count}.",
            param_hint="--count",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, images=images[:count], labels=labels[:count])
    click.echo(str(output))
