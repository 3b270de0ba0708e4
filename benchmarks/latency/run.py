"""Run the committed latency measurement: the two `approxifer-onnx bench` runs behind docs.

1. ``results/p05``: every strategy at p = 0.05, K = 8 and K = 12, 2000 groups each, on the
   trained models, in one run: the measurement that the expected results are checked on.
2. ``results/all``: every straggler model at K = 8, 500 groups each, on the trained models and
   a wider random-weight CNN (latency only), with the overhead and throughput measurements.

Trained models: the example classifier examples/fashion_mnist_*.onnx and the zoo ResNet-18 when
they exist, else an MLP trained by train_mlp.py (about 0.86 test accuracy).

    python benchmarks/latency/run.py [--dry-run]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FALLBACK_MODEL = RESULTS / "fashion-mnist-mlp.onnx"


def trained_models() -> list[Path]:
    """Return the example classifier and the zoo ResNet-18 when built, else the trained MLP."""
    from approxifer_onnx_cli.bench import default_models

    models = default_models()
    if models:
        return models
    if not FALLBACK_MODEL.exists():
        subprocess.run([sys.executable, str(HERE / "train_mlp.py"), "--output", str(FALLBACK_MODEL)], check=True)
    return [FALLBACK_MODEL]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="Print the commands without running them.")
    args = parser.parse_args(argv)

    model_options = [option for path in trained_models() for option in ("--model", str(path))]
    bench = [str(Path(sys.executable).parent / "approxifer-onnx"), "bench", "--no-progress", *model_options]
    runs = [
        [*bench, "--no-random-cnn", "-k", "8", "-k", "12", "--straggler-model", "p=0.05", "--groups", "2000",
         "--overhead-k", "8", "--no-throughput", "--output-dir", str(RESULTS / "p05")],
        [*bench, "-k", "8", "--groups", "500", "--output-dir", str(RESULTS / "all")],
    ]
    for command in runs:
        print(" ".join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
