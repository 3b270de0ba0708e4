"""Coded accuracy against the differential-privacy parameter epsilon, for both noise placements.

Follows the ApproxIFER protocol (first K of N = K + S results, S random stragglers per group) on
one model and data set, by default the zoo ResNet-18 on the 10,000 Fashion-MNIST test images, and
adds the Laplace mechanism of `approxifer_onnx.privacy`:

- placement "outputs": each worker's C logits are clipped to --logit-bounds and noised, so one
  released vector has L1 sensitivity C * (upper - lower);
- placement "queries": each coded query is clipped to --input-range and noised before the model
  runs on it, so one released vector has L1 sensitivity d * (high - low) for d input values.

Rows with epsilon None clip without adding noise, which separates the cost of clipping from the
cost of noise. Every row of a pass reuses the same groups and the same stragglers, so differences
between rows come from clipping and noise alone. Writes JSON, CSV and Markdown tables and a PNG
plot.

    python benchmarks/privacy_epsilon.py --model PATH --data /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from approxifer_onnx.coding import DEFAULT_NODE_FAMILY, NODE_FAMILIES, BerrutCode
from approxifer_onnx.data import load_dataset
from approxifer_onnx.evaluation import draw_available, predict_in_batches
from approxifer_onnx.model import OnnxModel
from approxifer_onnx.privacy import (
    PRIVACY_PLACEMENTS,
    LaplaceMechanism,
    apply_to_outputs,
    apply_to_queries,
    check_bounds,
)

DEFAULT_EPSILONS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def default_model() -> Path | None:
    """Return the zoo ResNet-18 for Fashion-MNIST in the cache, or None when it is not built."""
    try:
        from model_zoo.build import cached_model_path
    except ImportError:
        return None
    return cached_model_path("resnet18", "fashion-mnist")


def parse_pair(text: str) -> tuple[float, float]:
    """Parse "LOW,HIGH" into two floats."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as -10,10, got {text!r}")
    try:
        return check_bounds(float(parts[0]), float(parts[1]))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX classifier [default: the zoo's resnet18 for fashion-mnist].")
    parser.add_argument("--data", type=Path, default=None,
                        help="Test data [default: Debian's Fashion-MNIST folder].")
    parser.add_argument("--name", default="resnet18-fashion-mnist",
                        help="Name used in the output file names.")
    parser.add_argument("-k", type=int, default=8, help="Queries per group.")
    parser.add_argument("-s", "--stragglers", type=int, default=1, help="Stragglers S.")
    parser.add_argument("--nodes", choices=["auto", *NODE_FAMILIES], default=DEFAULT_NODE_FAMILY,
                        help="Worker node family.")
    parser.add_argument("--epsilons", type=float, nargs="+", default=list(DEFAULT_EPSILONS),
                        help="Privacy parameters to measure; a run without noise is always added.")
    parser.add_argument("--placements", nargs="+", choices=PRIVACY_PLACEMENTS,
                        default=list(PRIVACY_PLACEMENTS), help="Where the noise is added.")
    parser.add_argument("--logit-bounds", type=parse_pair, default=(-10.0, 10.0), metavar="LOW,HIGH",
                        help="Clipping bounds of each logit for the outputs placement. Choose them "
                             "without looking at the test data, which they would leak.")
    parser.add_argument("--input-range", type=parse_pair, default=(0.0, 1.0), metavar="LOW,HIGH",
                        help="Range of the preprocessed inputs, for the queries placement.")
    parser.add_argument("--passes", type=int, default=1,
                        help="Passes over the data, each with new groups, stragglers and noise.")
    parser.add_argument("--batch-size", type=int, default=256, help="Model batch size.")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the groups, the stragglers and the noise.")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first inputs.")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def draw_groups(count: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split `count` inputs into random groups of K.

    Returns
    -------
    order : ndarray of int, shape (G, K)
        Data-set index of each scored query; -1 marks padding in the last group.
    source : ndarray of int, shape (G, K)
        Data-set index of the input that fills each slot; padding repeats random inputs.
    """
    groups = math.ceil(count / k)
    padding = groups * k - count
    order = np.concatenate([rng.permutation(count), np.full(padding, -1)]).reshape(groups, k)
    source = order.copy()
    if padding:
        source[order < 0] = rng.choice(count, size=padding, replace=False)
    return order, source


def run_coded(model: OnnxModel, coded: np.ndarray, batch_size: int) -> np.ndarray:
    """Run the model on (G, N, *shape) coded queries and return (G, N, C) float64 outputs."""
    groups, workers = coded.shape[:2]
    flat = coded.reshape((groups * workers,) + coded.shape[2:])
    outputs = predict_in_batches(model, flat, batch_size=batch_size)
    return outputs.reshape((groups, workers) + outputs.shape[1:])


def score(code, outputs, available, order, labels, base_predictions) -> tuple[int, int]:
    """Decode and return (correct predictions, predictions equal to the centralized ones)."""
    estimates = code.decode(outputs, available)  # (G, K, C)
    real = order >= 0
    predictions = estimates.argmax(axis=-1)[real]
    indices = order[real]
    return int(np.sum(predictions == labels[indices])), int(np.sum(predictions == base_predictions[indices]))


def main(argv=None) -> int:
    args = parse_args(argv)
    model_path = args.model or default_model()
    if model_path is None:
        print("no --model given and the zoo ResNet-18 is not built; run "
              "`python -m model_zoo build resnet18 --dataset fashion-mnist` first",
              file=sys.stderr)
        return 2
    model = OnnxModel(model_path)
    dataset = load_dataset(args.data, limit=args.limit)
    if dataset.labels is None:
        print(f"{dataset.source} has no labels; accuracy needs labelled data", file=sys.stderr)
        return 2
    inputs, labels = dataset.inputs, dataset.labels
    rng = np.random.default_rng(args.seed)
    noise_rng = np.random.default_rng([args.seed, 1])
    started = time.time()

    base = predict_in_batches(model, inputs, batch_size=args.batch_size)
    base_predictions = base.argmax(axis=1)
    code = BerrutCode(args.k, args.stragglers, nodes=args.nodes)
    num_classes = base.shape[1]
    query_size = int(np.prod(inputs.shape[1:]))
    # ("none", None) is plain coded inference; (placement, None) clips without noise
    settings = [("none", None)] + [(placement, epsilon) for placement in args.placements
                                   for epsilon in [None, *args.epsilons]]
    correct = dict.fromkeys(settings, 0)
    agree = dict.fromkeys(settings, 0)
    clipped_logits = clipped_query_values = 0
    scored = 0

    for index in range(args.passes):
        order, source = draw_groups(len(inputs), args.k, rng)
        coded = code.encode(inputs[source].astype(np.float64))  # (G, N, *shape)
        available = draw_available(code, len(order), wait="first-k", rng=rng)
        clean = run_coded(model, coded, args.batch_size)  # (G, N, C)
        scored += int(np.sum(order >= 0))
        low, high = args.logit_bounds
        clipped_logits += int(np.sum((clean < low) | (clean > high)))
        clipped_query_values += int(np.sum((coded < args.input_range[0]) | (coded > args.input_range[1])))

        for setting in settings:
            placement, epsilon = setting
            if placement == "none":
                outputs = clean
            elif placement == "outputs" and epsilon is None:
                outputs = np.clip(clean, low, high)
            elif placement == "outputs":
                mechanism = LaplaceMechanism(epsilon=epsilon, lower=low, upper=high, rng=noise_rng)
                outputs = apply_to_outputs(clean, mechanism)
            elif epsilon is None:
                outputs = run_coded(model, np.clip(coded, *args.input_range), args.batch_size)
            else:
                lower, upper = args.input_range
                mechanism = LaplaceMechanism(epsilon=epsilon, lower=lower, upper=upper, rng=noise_rng)
                outputs = run_coded(model, apply_to_queries(coded, mechanism, args.input_range), args.batch_size)
            right, same = score(code, outputs, available, order, labels, base_predictions)
            correct[setting] += right
            agree[setting] += same
            print(f"pass {index + 1}/{args.passes} {placement:8s} epsilon={epsilon if epsilon else '-':<6} "
                  f"accuracy so far {correct[setting] / scored:.4f}", flush=True)

    rows = []
    for placement, epsilon in settings:
        if epsilon is None:
            scale = None
        else:
            lower, upper = args.logit_bounds if placement == "outputs" else args.input_range
            size = num_classes if placement == "outputs" else query_size
            scale = LaplaceMechanism(epsilon=epsilon, lower=lower, upper=upper).noise_parameters(size).scale
        rows.append({
            "placement": placement,
            "epsilon": epsilon,
            # a query enters all N coded queries of its group, so N released vectors depend on it
            "epsilon_per_query_all_workers": None if epsilon is None else code.num_workers * epsilon,
            "noise_scale_per_value": scale,
            "accuracy_coded": correct[(placement, epsilon)] / scored,
            "agreement": agree[(placement, epsilon)] / scored,
        })

    groups_total = args.passes * math.ceil(len(inputs) / args.k)
    report = {
        "model": str(model_path),
        "data": dataset.source,
        "num_inputs": len(inputs),
        "k": args.k,
        "stragglers": args.stragglers,
        "num_workers": code.num_workers,
        "nodes": args.nodes,
        "wait": "first-k",
        "passes": args.passes,
        "seed": args.seed,
        "logit_bounds": list(args.logit_bounds),
        "input_range": list(args.input_range),
        "num_classes": num_classes,
        "query_size": query_size,
        "accuracy_centralized": float(np.mean(base_predictions == labels)),
        "clipped_logit_share": clipped_logits / (groups_total * code.num_workers * num_classes),
        "clipped_coded_value_share": clipped_query_values / (groups_total * code.num_workers * query_size),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                     "processor": platform.processor()},
        "wall_seconds": round(time.time() - started, 1),
        "rows": rows,
    }
    write_outputs(args.output_dir, args.name, report)
    return 0


def write_outputs(folder: Path, name: str, report: dict) -> None:
    """Write the report as JSON, the rows as CSV and Markdown, and accuracy against epsilon as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"privacy_epsilon_{name}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    rows = report["rows"]
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    lines = [
        "| placement | epsilon per released vector | epsilon per query, all N workers | noise scale per value "
        "| coded accuracy | agreement with centralized |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["epsilon"] is not None:
            epsilon = f"{row['epsilon']:g}"
        else:
            epsilon = "no noise" if row["placement"] == "none" else "clipping only"
        per_query = "-" if row["epsilon_per_query_all_workers"] is None else f"{row['epsilon_per_query_all_workers']:g}"
        scale = "-" if row["noise_scale_per_value"] is None else f"{row['noise_scale_per_value']:.3g}"
        lines.append(f"| {row['placement']} | {epsilon} | {per_query} | {scale} | "
                     f"{row['accuracy_coded']:.4f} | {row['agreement']:.4f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for placement, marker, color in (("outputs", "o", "tab:blue"), ("queries", "s", "tab:orange")):
        chosen = [row for row in rows if row["placement"] == placement and row["epsilon"] is not None]
        if chosen:
            axes.plot([row["epsilon"] for row in chosen], [row["accuracy_coded"] for row in chosen],
                      marker=marker, color=color, label=f"noise on {placement}")
        clipped = [row for row in rows if row["placement"] == placement and row["epsilon"] is None]
        for row in clipped:
            axes.axhline(row["accuracy_coded"], color=color, linestyle=(0, (1, 3)), linewidth=1,
                         label=f"{placement} clipped, no noise")
    clean = next(row for row in rows if row["placement"] == "none")
    axes.axhline(clean["accuracy_coded"], color="black", linestyle="--", label="coded, no noise")
    axes.axhline(report["accuracy_centralized"], color="gray", linestyle=":", label="centralized, no noise")
    axes.axhline(1 / report["num_classes"], color="red", linestyle="-.", linewidth=0.8, label="chance")
    axes.set_xscale("log")
    axes.set_xlabel("epsilon per released vector")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"{name}: K={report['k']}, S={report['stragglers']}, {report['num_inputs']} test inputs")
    axes.legend(loc="upper left", bbox_to_anchor=(0.0, 0.87), fontsize=8)
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
