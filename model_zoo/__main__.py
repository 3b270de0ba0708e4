"""Command line of the model zoo: ``python -m model_zoo list|build|test-slice``."""

from __future__ import annotations

import logging

import click

from model_zoo.commands import build_command, list_command, test_slice_command


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """Train zoo classifiers on the CPU and export them to ONNX."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


main.add_command(list_command)
main.add_command(build_command)
main.add_command(test_slice_command)


if __name__ == "__main__":
    main()
