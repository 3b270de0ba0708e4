"""Coded accuracy and coding overhead of a classifier on a full test set.

Measures, on one model and data set (by default the zoo ResNet-18 on the 10,000 Fashion-MNIST
test images):

- base (centralized) accuracy;
- coded accuracy with the ApproxIFER protocol: the `first-k` policy with S random stragglers in
  every group, for each worker node family;
- coded accuracy with the `deadline` policy when each worker is late with probability p;
- encode plus decode time as a share of the model's inference time on the coded queries.

Writes JSON, CSV and Markdown tables and a bar chart to --output-dir.

    python benchmarks/coded_accuracy.py --model PATH --data /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from approxifer_onnx.coding import NODE_FAMILIES, BerrutCode
from approxifer_onnx.data import load_dataset
from approxifer_onnx.evaluation import compute_coded_outputs, evaluate_protocol, predict_in_batches
from approxifer_onnx.model import OnnxModel

# ApproxIFER (AAAI 2022) plotting data, ResNet-18 on Fashion-MNIST, first K of N = K + S results.
PAPER_FASHION_MNIST = {"base": 0.97, (8, 1): 0.74, (10, 1): 0.73, (12, 1): 0.72, (8, 2): 0.655,
                       (8, 3): 0.64}


def default_model() -> Path | None:
    """Return the zoo ResNet-18 for Fashion-MNIST in the cache, or None when it is not built."""
    try:
        from model_zoo.build import cached_model_path
    except ImportError:
        return None
    return cached_model_path("resnet18", "fashion-mnist")


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
    parser.add_argument("--late-probability", type=float, default=0.05,
                        help="Probability that a worker is late, for the deadline policy.")
    parser.add_argument("--passes", type=int, default=3,
                        help="Passes over the data, each with new groups and stragglers.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="Use only the first inputs.")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


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
    rng = np.random.default_rng(args.seed)
    started = time.time()

    base = predict_in_batches(model, dataset.inputs, progress=True, description="base model")
    rows = []
    for family in NODE_FAMILIES:
        code = BerrutCode(args.k, args.stragglers, nodes=family)
        coded = [
            compute_coded_outputs(model, dataset.inputs, code, rng=rng, progress=True)
            for _ in range(args.passes)
        ]
        settings = [("first-k", 0.0), ("deadline", args.late_probability), ("deadline", 0.0)]
        for wait, probability in settings:
            for decode in ("logits", "probabilities"):
                result = evaluate_protocol(
                    model, dataset.inputs, dataset.labels, k=args.k, stragglers=args.stragglers,
                    nodes=family, wait=wait, straggler_probability=probability, decode=decode,
                    passes=args.passes, rng=rng, base_outputs=base, coded_outputs=coded,
                )
                row = result.to_dict()
                row["coding_share_of_model_time"] = (
                    (row["encode_seconds"] + row["decode_seconds"]) / row["model_seconds"]
                )
                rows.append(row)
                print(f"{family:17s} {wait:8s} p={probability:<5g} {decode:13s} "
                      f"coded {row['accuracy_coded']:.4f} (base {row['accuracy_centralized']:.4f})"
                      f" results used {row['mean_results_used']:.2f}", flush=True)

    overhead = measure_overhead(model, dataset.inputs, BerrutCode(args.k, args.stragglers), rng)
    print(f"encode {overhead['encode_ms_per_group']:.3f} ms + decode "
          f"{overhead['decode_ms_per_group']:.3f} ms per group against "
          f"{overhead['model_ms_per_group']:.2f} ms of model time: "
          f"{100 * overhead['coding_share_of_model_time']:.2f}%", flush=True)

    report = {
        "model": str(model_path),
        "data": dataset.source,
        "num_inputs": len(dataset),
        "k": args.k,
        "stragglers": args.stragglers,
        "passes": args.passes,
        "seed": args.seed,
        "late_probability": args.late_probability,
        "paper_fashion_mnist_resnet18": {"base": PAPER_FASHION_MNIST["base"],
                                         "coded_k8_s1": PAPER_FASHION_MNIST[(8, 1)]},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                     "processor": platform.processor()},
        "wall_seconds": round(time.time() - started, 1),
        "overhead": overhead,
        "rows": rows,
    }
    write_outputs(args.output_dir, args.name, report)
    return 0


def best_time(function, repeats: int) -> float:
    """Return the shortest wall time of `repeats` calls, the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def measure_overhead(model, inputs, code, rng, groups: int = 256, repeats: int = 5) -> dict:
    """Time encoding, decoding and the model per group of K, each as the best of `repeats`.

    The model runs on the N coded queries of `groups` groups, as all workers together would;
    decoding uses the results of the first K workers.
    """
    chosen = rng.choice(len(inputs), size=groups * code.k, replace=False)
    queries = inputs[chosen].reshape((groups, code.k) + inputs.shape[1:])
    coded = code.encode(queries)
    flat = np.ascontiguousarray(coded.reshape((-1,) + coded.shape[2:]))
    results = model.predict(flat)[0].reshape(groups, code.num_workers, -1)
    available = np.arange(code.num_workers) < code.k

    encode = best_time(lambda: code.encode(queries), repeats)
    decode = best_time(lambda: code.decode(results, available), repeats)
    model_time = best_time(lambda: model.predict(flat), max(1, repeats // 2))
    return {
        "groups": groups,
        "k": code.k,
        "num_workers": code.num_workers,
        "nodes": code.node_family,
        "encode_ms_per_group": 1000 * encode / groups,
        "decode_ms_per_group": 1000 * decode / groups,
        "model_ms_per_group": 1000 * model_time / groups,
        "coding_share_of_model_time": (encode + decode) / model_time,
    }


def write_outputs(folder: Path, name: str, report: dict) -> None:
    """Write the report as JSON, the rows as CSV and Markdown, and a bar chart as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"coded_accuracy_{name}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    rows = report["rows"]
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    lines = [
        "| nodes | wait | p late | decode | results used | base acc. | coded acc. | agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['nodes']} | {row['wait']} | {row['straggler_probability']:g} | "
            f"{row['decode']} | {row['mean_results_used']:.2f} | {row['accuracy_centralized']:.4f} "
            f"| {row['accuracy_coded']:.4f} | {row['agreement']:.4f} |"
        )
    overhead = report["overhead"]
    lines += [
        "",
        f"Coding overhead (K={overhead['k']}, N={overhead['num_workers']}, best of repeated runs): "
        f"encode {overhead['encode_ms_per_group']:.3f} ms and decode "
        f"{overhead['decode_ms_per_group']:.3f} ms per group, against "
        f"{overhead['model_ms_per_group']:.2f} ms of model time for its N coded queries: "
        f"{100 * overhead['coding_share_of_model_time']:.2f}%.",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [row for row in rows if row["decode"] == "logits"]
    labels = [f"{row['nodes']}\n{row['wait']} p={row['straggler_probability']:g}"
              for row in chosen]
    figure, axes = plt.subplots(figsize=(max(8, len(chosen) * 1.1), 4.5))
    positions = np.arange(len(chosen))
    axes.bar(positions - 0.2, [row["accuracy_centralized"] for row in chosen], 0.4, label="base")
    axes.bar(positions + 0.2, [row["accuracy_coded"] for row in chosen], 0.4, label="coded")
    axes.axhline(PAPER_FASHION_MNIST[(8, 1)], color="gray", linestyle="--",
                 label="paper, coded K=8 S=1")
    axes.set_xticks(positions, labels, fontsize=7)
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"{name}: K={report['k']}, S={report['stragglers']}, "
                   f"{report['num_inputs']} test inputs")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
