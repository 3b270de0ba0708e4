"""The `approxifer-onnx bench` command: latency and cost of coded inference against alternatives."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

logger = logging.getLogger("approxifer_onnx.cli.bench")

DEFAULT_OUTPUT = Path("bench-results")


def default_models() -> list[Path]:
    """Return the embedded example classifier and the zoo ResNet-18, those that exist."""
    found = sorted(Path("examples").glob("fashion_mnist_*.onnx"))[:1]
    try:
        from model_zoo.build import default_model_path
    except ImportError:
        return found
    zoo = default_model_path("resnet18", "fashion-mnist")
    return found + ([zoo] if zoo.exists() else [])


def register(main: click.Group) -> None:
    """Add the `bench` command to the click group `main`."""
    from .main import data_options, load_data, report_user_errors

    @main.command()
    @click.option("--model", "model_paths", multiple=True,
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Trained ONNX classifier; repeatable [default: examples/fashion_mnist_*.onnx "
                       "and the zoo ResNet-18, when present].")
    @click.option("--untrained-model", "untrained_paths", multiple=True,
                  type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="ONNX classifier measured for latency only; repeatable.")
    @click.option("--random-cnn/--no-random-cnn", default=True, show_default=True,
                  help="Also measure a wider random-weight CNN written to the output folder "
                       "(latency only).")
    @data_options
    @click.option("-k", "--k", "ks", type=click.IntRange(min=2), multiple=True, default=(8,),
                  show_default=True, help="Queries per group; repeatable.")
    @click.option("-s", "--stragglers", type=click.IntRange(min=1), multiple=True, default=(1, 2),
                  show_default=True, help="S of the ApproxIFER strategies; repeatable.")
    @click.option("--strategy", "strategies", multiple=True,
                  type=click.Choice(["uncoded", "replication", "hedged", "parity", "approxifer"]),
                  help="Strategies to run; repeatable [default: all].")
    @click.option("--straggler-model", "straggler_models", multiple=True,
                  help="p=PROBABILITY, slow-worker, cpu-contention or none; repeatable "
                       "[default: p=0.01, p=0.05, p=0.1, slow-worker, cpu-contention].")
    @click.option("--groups", type=click.IntRange(min=1), default=1000, show_default=True,
                  help="Measured groups of K queries per strategy and straggler model.")
    @click.option("--warmup-groups", type=click.IntRange(min=0), default=50, show_default=True,
                  help="Groups run before measuring; they seed the hedging threshold.")
    @click.option("--delay", default="pareto:0.02:1.5", show_default=True,
                  help="Delay of a late run for p=... models: SECONDS, exp:MEAN, pareto:MIN:ALPHA or "
                       "lognormal:MEDIAN:SIGMA, in seconds.")
    @click.option("--slow-delay", type=click.FloatRange(min=0, min_open=True), default=0.02,
                  show_default=True, help="Seconds by which the slow worker is late in every run.")
    @click.option("--busy-processes", type=click.IntRange(min=1), default=3, show_default=True,
                  help="Busy-loop processes sharing the contended worker's CPU.")
    @click.option("--deadline-factor", type=click.FloatRange(min=0, min_open=True), default=2.0,
                  show_default=True,
                  help="ApproxIFER deadline as a multiple of the uncoded median latency without "
                       "stragglers.")
    @click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
                  help="Seconds after which a group counts as incomplete.")
    @click.option("--overhead-k", "overhead_ks", type=click.IntRange(min=1), multiple=True,
                  default=(4, 8, 12, 16), show_default=True,
                  help="K values of the encode and decode timing; repeatable.")
    @click.option("--throughput/--no-throughput", default=True, show_default=True,
                  help="Compare coded and plain onnxruntime throughput at K=8, S=1.")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of inputs and stragglers.")
    @click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUTPUT,
                  show_default=True, help="Folder for CSV, JSON and plots.")
    @click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
    @report_user_errors
    def bench(model_paths, untrained_paths, random_cnn, data_path, split, limit, scale, size, channels, mean, std, ks,
              stragglers, strategies, straggler_models, groups, warmup_groups, delay, slow_delay,
              busy_processes, deadline_factor, timeout, overhead_ks, throughput, seed, output_dir, progress):
        """Measure latency, throughput, workers per query and accuracy of uncoded serving,
        replication, hedged requests, parity and ApproxIFER on the same workers and stragglers.
        """
        from approxifer_onnx.bench import BenchModel, LatencyConfig
        from approxifer_onnx.bench.models import write_random_cnn
        from approxifer_onnx.bench.report import format_table
        from approxifer_onnx.bench.runner import DEFAULT_STRAGGLER_MODELS
        from approxifer_onnx.bench.strategies import STRATEGY_NAMES
        from approxifer_onnx.bench.suite import run_suite

        trained = list(model_paths) or default_models()
        models = [BenchModel(path, _model_name(path), True) for path in trained]
        models += [BenchModel(path, _model_name(path), False) for path in untrained_paths]
        if random_cnn:
            path = write_random_cnn(output_dir / "random-cnn-large.onnx", widths=(64, 128, 256))
            models.append(BenchModel(path, "random-cnn-large", False))
        if not models:
            raise click.UsageError("no model to measure: pass --model PATH or keep --random-cnn")

        config = LatencyConfig(
            ks=tuple(ks), straggler_models=tuple(straggler_models) or DEFAULT_STRAGGLER_MODELS,
            strategies=tuple(strategies) or STRATEGY_NAMES, stragglers=tuple(stragglers), groups=groups,
            warmup_groups=warmup_groups, delay=delay, slow_delay=slow_delay, busy_processes=busy_processes,
            deadline_factor=deadline_factor, timeout=timeout, seed=seed,
        )
        dataset = load_data(data_path, split, limit, scale, mean, std, size, channels)
        result = run_suite(models, dataset.inputs, dataset.labels, config, output_dir,
                           overhead_ks=tuple(overhead_ks), throughput=throughput, data_source=dataset.source,
                           command=sys.argv, progress=progress)
        click.echo(format_table(result["records"]))
        for check in result["claims"]:
            click.echo(f"{'met' if check['met'] else 'NOT met'}: {check['claim']} "
                       f"({check['model']}, K={check['k']}, {check['strategy']})")
        click.echo(f"wrote {len(result['files'])} files to {output_dir}")


def _model_name(path: Path) -> str:
    # The zoo stores every model as <name>/model.onnx, so the folder names it.
    return path.parent.name if path.stem == "model" else path.stem
