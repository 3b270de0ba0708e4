"""Byzantine location on real model outputs: how many workers each locator needs.

For every code size K, worker count N (S = 0, as in ApproxIFER's Byzantine experiments), number
of wrong workers E, locator and attack, this benchmark measures on a real classifier:

- location success: the share of trials in which the suspects are exactly the wrong workers
  (every wrong one found, no honest one dropped);
- coded accuracy under attack after dropping the suspects, beside the accuracy with no attack
  at the same N (decoding every result, E = 0) and with E configured but nobody lying;
- the smallest N at which a locator reaches 99% location success, and the smallest N at which
  it also keeps accuracy under attack within 2 points of no attack, against the paper's
  N = 2K + 2E + S - 1.

The model runs once per (K, N) on the coded queries of the evaluation images and of a disjoint
calibration set. Every E, locator and attack reuses those outputs. Each locator's tolerance is
`calibrate_tolerance` on the calibration outputs (quantile --quantile, E random results
removed), never on the evaluated images. A trial is one group of K images with E wrong workers
drawn at random among the N; each group is attacked --trials-per-group times with new draws.

Writes byzantine-<name>.csv / .json (one row per setting), byzantine-<name>-summary.csv (the
smallest N per K, E, locator and attack) and PNG plots of location success and of accuracy
under attack to --output-dir.

    python benchmarks/byzantine.py --model examples/fashion_mnist_regnetx_002.onnx \\
        --name fashion-mnist --limit 2000
    python benchmarks/byzantine.py --digits --name digits
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from approxifer_onnx.attacks import ByzantineAttack, ByzantinePlan
from approxifer_onnx.coding import (
    NODE_FAMILIES,
    BerrutCode,
    calibrate_tolerance,
    locate,
    required_workers,
)
from approxifer_onnx.data import load_dataset
from approxifer_onnx.evaluation import compute_coded_outputs, predict_in_batches
from approxifer_onnx.model import OnnxModel

logger = logging.getLogger("byzantine")

# ApproxIFER (AAAI 2022), K = 12, N = 2K + 2E - 1, S = 0, Gaussian corruption: coded accuracy.
PAPER_ACCURACY = {
    "fashion-mnist": {1: 0.79, 2: 0.805, 3: 0.82},
    "mnist": {1: 0.97, 2: 0.95, 3: 0.93},
}

DEFAULT_LOCATORS = "subset-search,reed-solomon,joint,berrut-rational,welch,median"
MAIN_ATTACK = "gaussian:10"
MORE_ATTACKS = "gaussian:1,gaussian:100,sign-flip,constant:0,permuted,argmax-flip:0.1"
TARGET_SUCCESS = 0.99
# Accuracy under attack, after dropping the suspects, may be this far below no attack.
TARGET_ACCURACY_GAP = 0.02


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="ONNX classifier of 28x28 images.")
    source.add_argument("--digits", action="store_true",
                        help="Train a small MLP on scikit-learn's 8x8 digits, export it to ONNX "
                             "and use it.")
    parser.add_argument("--data", type=Path, default=None,
                        help="Images for --model [default: Debian's Fashion-MNIST test set].")

    parser.add_argument("--name", required=True, help="Name used in the output file names.")
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(PAPER_ACCURACY),
                        help="Data set whose published Byzantine accuracies the table shows.")
    parser.add_argument("--limit", type=int, default=2000,
                        help="Evaluation images [default: %(default)s].")
    parser.add_argument("--calibration", type=int, default=None,
                        help="Calibration images, disjoint from the evaluation images "
                             "[default: 1000, or 297 of the 797 held-out --digits].")

    parser.add_argument("-k", type=int, action="append", help="Queries per group (repeatable) "
                        "[default: 8 and 12].")
    parser.add_argument("--byzantine", default="1,2,3",
                        help="Values of E, comma-separated [default: %(default)s].")
    parser.add_argument("--locators", default=DEFAULT_LOCATORS,
                        help="Locators, comma-separated [default: %(default)s].")
    parser.add_argument("--attacks", default=MAIN_ATTACK,
                        help="Attacks KIND[:PARAMETER] measured for every locator, "
                             "comma-separated; the first is the one plotted "
                             "[default: %(default)s].")
    parser.add_argument("--more-attacks", default=MORE_ATTACKS,
                        help="Attacks measured only for --more-locators, comma-separated "
                             "[default: %(default)s].")
    parser.add_argument("--more-locators", default="subset-search,median",
                        help="Locators measured against --more-attacks too [default: %(default)s].")
    parser.add_argument("--from-threshold", default="",
                        help="Locators measured only from two workers below their own required "
                             "count, comma-separated (saves time on slow locators).")
    parser.add_argument("--extra-workers", type=int, default=2,
                        help="Worker counts measured beyond the paper's N = 2K + 2E - 1 "
                             "[default: %(default)s].")
    parser.add_argument("--trials-per-group", type=int, default=0,
                        help="Attack draws per group [default: enough for about 1000 trials].")
    parser.add_argument("--nodes", default="auto", choices=["auto", *NODE_FAMILIES],
                        help="Worker node family of every code [default: %(default)s].")
    parser.add_argument("--quantile", type=float, default=0.99,
                        help="Quantile of the clean statistic used as tolerance "
                             "[default: %(default)s].")

    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of groupings and attacks [default: %(default)s].")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"),
                        help="Folder of the result files [default: %(default)s].")
    return parser.parse_args(argv)


# --- models and data ------------------------------------------------------------------------


def export_digits_mlp(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train an MLP on scikit-learn's 8x8 digits, export it to ONNX, return the held-out data.

    The ONNX graph is Gemm, Relu, Gemm with the fitted weights (IR version 10, opset 17). The
    model trains on 1000 digits; the other 797, scaled to [0, 1], are returned as
    (images (797, 64) float32, labels (797,)).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(images))
    train, held_out = order[:1000], order[1000:]
    mlp = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(images[train], digits.target[train])

    weights = [numpy_helper.from_array(array.astype(np.float32), name) for name, array in (
        ("w1", mlp.coefs_[0]), ("b1", mlp.intercepts_[0]),
        ("w2", mlp.coefs_[1]), ("b2", mlp.intercepts_[1]),
    )]
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["hidden"]),
            helper.make_node("Relu", ["hidden"], ["activation"]),
            helper.make_node("Gemm", ["activation", "w2", "b2"], ["logits"]),
        ],
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, path)
    logger.info("digits MLP: test accuracy %.4f (sklearn)",
                mlp.score(images[held_out], digits.target[held_out]))
    return images[held_out], digits.target[held_out]


def load_inputs(args) -> tuple[OnnxModel, np.ndarray, np.ndarray, np.ndarray, str]:
    """Return (model, evaluation images, their labels, calibration images, model description)."""
    rng = np.random.default_rng(args.seed)
    if args.digits:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        path = args.output_dir / f"byzantine-{args.name}-mlp.onnx"
        images, labels = export_digits_mlp(path, args.seed)
        description = "MLP 64-64-10 on scikit-learn's 8x8 digits (trained here on 1000 digits)"
    else:
        dataset = load_dataset(args.data)
        images, labels = dataset.inputs, dataset.labels
        path = args.model
        description = str(args.model)
    count = args.calibration
    if count is None:
        count = 297 if args.digits else 1000
    order = rng.permutation(len(images))
    calibration = order[:count]
    evaluation = order[count : count + args.limit]
    return (OnnxModel(path), images[evaluation], labels[evaluation], images[calibration],
            description)


# --- one code -------------------------------------------------------------------------------


def parse_list(text: str, kind=str) -> list:
    return [kind(item.strip()) for item in text.split(",") if item.strip()]


def paper_workers(k: int, byzantine: int) -> int:
    """Return ApproxIFER's worker count N = 2K + 2E - 1 (Welch-style locator, S = 0)."""
    return required_workers("welch", k, 0, byzantine)


def accuracy(code, outputs, available, order, labels) -> float:
    """Coded accuracy of outputs (G, N, C) decoded from the available workers."""
    predictions = code.decode(outputs, available).argmax(axis=-1)  # (G, K)
    real = order >= 0
    return float(np.mean(predictions[real] == labels[order[real]]))


def attack_trials(code, outputs, order, attack, byzantine, repeats, rng):
    """Return attacked outputs (G*R, N, C), the wrong masks and the repeated grouping."""
    tiled = np.tile(outputs, (repeats, 1, 1))
    tiled_order = np.tile(order, (repeats, 1))
    available = np.ones(tiled.shape[:2], dtype=bool)
    wrong = ByzantinePlan(attack, count=byzantine).draw(available, rng)
    matrices = None
    if attack.kind == "argmax-flip":
        matrix = code.decode_matrix(range(code.num_workers))  # (K, N): the attacker's view
        matrices = np.broadcast_to(matrix, (tiled.shape[0],) + matrix.shape)
    attacked = attack.corrupt(tiled, wrong, rng, decode_matrices=matrices)
    return attacked, wrong, tiled_order


def evaluate_code(code, outputs, order, labels, calibration_outputs, args, done, rng):
    """Measure every E, locator and attack on one code's outputs; return result rows."""
    rows = []
    groups = outputs.shape[0]
    repeats = args.trials_per_group or max(1, round(1000 / groups))
    everyone = np.ones(code.num_workers, dtype=bool)
    accuracy_no_attack = accuracy(code, outputs, everyone, order, labels)
    for byzantine in parse_list(args.byzantine, int):
        if not code.k + byzantine + 1 <= code.num_workers <= (
            paper_workers(code.k, byzantine) + args.extra_workers
        ):
            continue
        for locator in parse_list(args.locators):
            threshold = required_workers(locator, code.k, 0, byzantine)
            if locator in parse_list(args.from_threshold) and code.num_workers < threshold - 2:
                continue
            attacks = parse_list(args.attacks)
            if locator in parse_list(args.more_locators):
                attacks += parse_list(args.more_attacks)
            # The paper's N is always measured, to compare with its published accuracies.
            at_paper = code.num_workers == paper_workers(code.k, byzantine)
            pending = [text for text in attacks
                       if at_paper or not done.get((code.k, byzantine, locator, text))]
            if not pending:
                continue
            started = time.perf_counter()
            tolerance = calibrate_tolerance(code, calibration_outputs, locator,
                                            byzantine=byzantine, quantile=args.quantile, rng=rng)
            clean = locate(code, outputs, everyone, byzantine, locator, tolerance=tolerance)
            accuracy_configured = accuracy(code, outputs, clean.trusted, order, labels)
            for text in pending:
                kind, _, parameter = text.partition(":")
                attack = ByzantineAttack(kind, float(parameter) if parameter else None)
                attacked, wrong, tiled_order = attack_trials(
                    code, outputs, order, attack, byzantine, repeats, rng
                )
                result = locate(code, attacked, np.ones_like(wrong), byzantine, locator,
                                tolerance=tolerance)
                suspected = np.zeros_like(wrong)
                for trial, suspects in enumerate(result.suspected):
                    suspected[trial, list(suspects)] = True
                found = np.all(suspected == wrong, axis=1)
                rows.append({
                    "k": code.k,
                    "num_workers": code.num_workers,
                    "node_family": code.node_family,
                    "paper_num_workers": paper_workers(code.k, byzantine),
                    "byzantine": byzantine,
                    "locator": locator,
                    "attack": text,
                    "trials": int(found.size),
                    "location_success": float(found.mean()),
                    "all_wrong_found": float(np.mean(np.all(suspected >= wrong, axis=1))),
                    "honest_dropped_per_trial": float(np.mean(np.sum(suspected & ~wrong, 1))),
                    "accuracy_attacked": accuracy(code, attacked, result.trusted, tiled_order,
                                                  labels),
                    "accuracy_attacked_undefended": accuracy(
                        code, attacked, np.ones_like(wrong), tiled_order, labels),
                    "accuracy_no_attack": accuracy_no_attack,
                    "accuracy_no_attack_located": accuracy_configured,
                    "honest_groups_with_drops": float(np.mean(clean.estimated_errors > 0)),
                    "tolerance": tolerance,
                    "seconds": time.perf_counter() - started,
                })
                key = (code.k, byzantine, locator, text)
                # Stop a combination after two consecutive worker counts at both targets.
                streak = done.get(("streak",) + key, 0)
                streak = streak + 1 if meets_targets(rows[-1]) else 0
                done[("streak",) + key] = streak
                done[key] = streak >= 2
            logger.info("K=%d N=%d E=%d %s: %.1f s", code.k, code.num_workers, byzantine,
                        locator, time.perf_counter() - started)
    return rows


# --- summary and output ---------------------------------------------------------------------


def meets_targets(row: dict) -> bool:
    """Return whether a row locates in 99% of trials and keeps accuracy within 2 points."""
    gap = row["accuracy_no_attack"] - row["accuracy_attacked"]
    return row["location_success"] >= TARGET_SUCCESS and gap <= TARGET_ACCURACY_GAP


def summarize(rows: list[dict]) -> list[dict]:
    """Return, per (K, E, locator, attack), the smallest N at each target.

    The first is 99% location success; the second adds accuracy under attack within 2 points
    of no attack.
    """
    summary = []
    keys = sorted({(r["k"], r["byzantine"], r["locator"], r["attack"]) for r in rows})
    for key in keys:
        measured = sorted((r for r in rows if (r["k"], r["byzantine"], r["locator"],
                                               r["attack"]) == key),
                          key=lambda r: r["num_workers"])
        reached = [r for r in measured if r["location_success"] >= TARGET_SUCCESS]
        first = reached[0] if reached else None
        both = next((r for r in measured if meets_targets(r)), None)
        summary.append({
            "k": key[0],
            "byzantine": key[1],
            "locator": key[2],
            "attack": key[3],
            "paper_num_workers": measured[0]["paper_num_workers"],
            "smallest_num_workers_99": first["num_workers"] if first else None,
            "workers_saved": first["paper_num_workers"] - first["num_workers"] if first else None,
            "location_success": first["location_success"] if first else None,
            "accuracy_attacked": first["accuracy_attacked"] if first else None,
            "accuracy_no_attack": first["accuracy_no_attack"] if first else None,
            "accuracy_no_attack_located": first["accuracy_no_attack_located"] if first else None,
            "smallest_num_workers_both": both["num_workers"] if both else None,
            "both_location_success": both["location_success"] if both else None,
            "both_accuracy_attacked": both["accuracy_attacked"] if both else None,
            "both_accuracy_no_attack": both["accuracy_no_attack"] if both else None,
            "largest_num_workers_measured": measured[-1]["num_workers"],
            "best_success_measured": max(r["location_success"] for r in measured),
        })
    return summary


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict], args, path: Path, value: str = "location_success") -> None:
    """Plot one column against N per K and E for the main attack, one line per locator.

    value "location_success" draws the 99% target; "accuracy_attacked" draws the accuracy
    without attack and the 2-point band below it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    main_attack = parse_list(args.attacks)[0]
    ks = sorted({r["k"] for r in rows})
    es = sorted({r["byzantine"] for r in rows})
    figure, axes = plt.subplots(len(ks), len(es), figsize=(4 * len(es), 3.2 * len(ks)),
                                squeeze=False, sharey=True)
    for row_index, k in enumerate(ks):
        for column, byzantine in enumerate(es):
            axis = axes[row_index][column]
            measured = [r for r in rows if r["k"] == k and r["byzantine"] == byzantine
                        and r["attack"] == main_attack]
            for locator in parse_list(args.locators):
                points = sorted((r["num_workers"], r[value]) for r in measured
                                if r["locator"] == locator)
                if points:
                    axis.plot(*zip(*points), marker="o", markersize=3, label=locator)
            axis.axvline(paper_workers(k, byzantine), color="grey", linestyle="--")
            if value == "location_success":
                axis.axhline(TARGET_SUCCESS, color="grey", linestyle=":")
                axis.set_ylabel("location success")
            else:
                clean = sorted({(r["num_workers"], r["accuracy_no_attack"]) for r in measured})
                if clean:
                    n, accuracy_clean = zip(*clean)
                    axis.plot(n, accuracy_clean, color="black", linewidth=1, label="no attack")
                    axis.fill_between(n, np.array(accuracy_clean) - TARGET_ACCURACY_GAP,
                                      accuracy_clean, color="grey", alpha=0.2,
                                      label="within 2 points")
                axis.set_ylabel("accuracy under attack")
            axis.set_title(f"K={k}, E={byzantine}, {main_attack}")
            axis.set_xlabel("workers N (dashed: paper's 2K+2E-1)")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*locator needs.*", category=UserWarning)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    model, images, labels, calibration_images, description = load_inputs(args)
    base_accuracy = float(np.mean(predict_in_batches(model, images).argmax(1) == labels))
    logger.info("%s: %d evaluation images, base accuracy %.4f", args.name, len(images),
                base_accuracy)

    ks = args.k or [8, 12]
    byzantine_values = parse_list(args.byzantine, int)
    rows: list[dict] = []
    done: dict = {}
    for k in ks:
        smallest = k + min(byzantine_values) + 1
        largest = paper_workers(k, max(byzantine_values)) + args.extra_workers
        for num_workers in range(smallest, largest + 1):
            try:
                code = BerrutCode(k, 0, num_workers=num_workers, nodes=args.nodes)
            except ValueError as error:  # e.g. "systematic" nodes beyond N = 2K - 1
                logger.info("K=%d N=%d skipped: %s", k, num_workers, error)
                continue
            coded = compute_coded_outputs(model, images, code, rng=rng)
            calibration = compute_coded_outputs(model, calibration_images, code, rng=rng)
            rows += evaluate_code(code, coded.outputs, coded.order, labels,
                                  calibration.outputs, args, done, rng)

    summary = summarize(rows)
    prefix = args.output_dir / f"byzantine-{args.name}"
    write_csv(prefix.with_name(prefix.name + ".csv"), rows)
    write_csv(prefix.with_name(prefix.name + "-summary.csv"), summary)
    plot(rows, args, prefix.with_name(prefix.name + ".png"))
    plot(rows, args, prefix.with_name(prefix.name + "-accuracy.png"), value="accuracy_attacked")
    metadata = {
        "name": args.name,
        "model": description,
        "dataset": args.dataset,
        "evaluation_images": len(images),
        "calibration_images": len(calibration_images),
        "base_accuracy": base_accuracy,
        "paper_accuracy_k12": PAPER_ACCURACY[args.dataset],
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "nodes": args.nodes,
        "wall_seconds": time.perf_counter() - started,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "rows": rows,
        "summary": summary,
    }
    prefix.with_name(prefix.name + ".json").write_text(json.dumps(metadata, indent=1))
    logger.info("wrote %s.{csv,json,png}, %s-summary.csv and %s-accuracy.png in %.0f s", prefix,
                prefix, prefix, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
