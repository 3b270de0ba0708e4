"""The `approxifer-onnx zoo` group: list and build the model zoo's classifiers."""

from __future__ import annotations

import click

__all__ = ["register", "zoo"]


@click.group("zoo")
def zoo() -> None:
    """Train timm and torchvision classifiers on the CPU and export them to ONNX.

    Training needs the 'zoo' extra (torch, timm, torchvision).
    """


def register(main: click.Group) -> None:
    """Add the `zoo` group, with `list`, `build` and `test-slice`, to `approxifer-onnx`."""
    from model_zoo.commands import build_command, list_command, test_slice_command

    for command in (list_command, build_command, test_slice_command):
        zoo.add_command(command)
    main.add_command(zoo)
