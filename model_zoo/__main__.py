"""Command line of the model zoo: ``python -m model_zoo list|build|test-slice``."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from model_zoo.datasets import DATASETS, load_split_uint8
from model_zoo.recipe import TrainConfig
from model_zoo.registry import get_entry, list_models

_DEFAULTS = TrainConfig()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """Train zoo classifiers on the CPU and export them to ONNX."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command("list")
@click.argument("pattern", default="*")
def list_command(pattern: str) -> None:
    """List the models whose names match PATTERN (shell wildcards)."""
    for name in list_models(pattern):
        entry = get_entry(name)
        click.echo(f"{name:<24} {entry.source:<12} {entry.description}")


@main.command("build")
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
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the IDX files [default: the dataset's system folder].")
@click.option("--train-limit", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images only.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write [default: the cache folder].")
@click.option("--force", is_flag=True, help="Retrain even if a matching model exists.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def build_command(name: str, no_progress: bool, **options) -> None:
    """Train NAME, export it to ONNX, check it and print the file's path."""
    from model_zoo.build import build

    try:
        get_entry(name)
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="NAME") from None
    path = build(name, progress=not no_progress, **options)
    click.echo(str(path))


@main.command("test-slice")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist",
              show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Number of test images, taken from the start of the test split.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder with the IDX files [default: the dataset's system folder].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .npz file to write.")
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


if __name__ == "__main__":
    main()
