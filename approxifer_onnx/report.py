"""Accuracy tables with confidence intervals, as Markdown, CSV and JSON, and bar charts as PNG.

Intervals:

- centralized accuracy: Wilson score interval, because every input is scored independently;
- coded accuracy: percentile bootstrap over groups of K, because the queries of one group share
  their straggler pattern and coded queries, so their errors are correlated.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np

__all__ = [
    "PUBLISHED_RESNET18",
    "group_bootstrap_interval",
    "plot_accuracy",
    "published_accuracy",
    "wilson_interval",
    "write_report",
]

#: ApproxIFER's coded accuracy for ResNet-18 with stragglers only and N = K + S, from the
#: authors' plotting data (Soleymani et al., AAAI 2022), keyed by data set and (K, S).
PUBLISHED_RESNET18 = {
    "mnist": {"base": 0.99, (8, 1): 0.872, (10, 1): 0.872, (12, 1): 0.868, (8, 2): 0.826,
              (8, 3): 0.775},
    "fashion-mnist": {"base": 0.97, (8, 1): 0.74, (10, 1): 0.73, (12, 1): 0.72, (8, 2): 0.655,
                      (8, 3): 0.64},
    "cifar-10": {"base": 0.94, (8, 1): 0.776, (10, 1): 0.774, (12, 1): 0.774, (8, 2): 0.741,
                 (8, 3): 0.731},
}


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got confidence={confidence}")
    return confidence


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion.

    Parameters
    ----------
    successes : int, 0 <= successes <= trials
    trials : int, >= 1
    confidence : float in (0, 1)

    Returns
    -------
    (low, high) : tuple of float in [0, 1]
    """
    confidence = _check_confidence(confidence)
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(
            f"need 0 <= successes <= trials and trials >= 1, got successes={successes}, "
            f"trials={trials}"
        )
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    proportion = successes / trials
    denominator = 1 + z**2 / trials
    center = (proportion + z**2 / (2 * trials)) / denominator
    half_width = z * math.sqrt(proportion * (1 - proportion) / trials + z**2 / (4 * trials**2))
    half_width /= denominator
    return max(0.0, center - half_width), min(1.0, center + half_width)


def group_bootstrap_interval(
    correct: np.ndarray,
    sizes: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: int | np.random.Generator | None = 0,
) -> tuple[float, float]:
    """Return a percentile bootstrap interval of an accuracy, resampling whole groups.

    Parameters
    ----------
    correct : array_like of int, shape (G,)
        Correct predictions in each group.
    sizes : array_like of int, shape (G,)
        Scored queries in each group, at least one in total.
    confidence : float in (0, 1)
    resamples : int, >= 1
    rng : int or Generator, optional
        Seed or generator of the resampling; the default seed 0 makes reports reproducible.

    Returns
    -------
    (low, high) : tuple of float
    """
    confidence = _check_confidence(confidence)
    correct = np.asarray(correct, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if correct.shape != sizes.shape or correct.ndim != 1 or sizes.sum() <= 0:
        raise ValueError(
            "correct and sizes must be 1-D arrays of one shape with at least one scored query, "
            f"got shapes {correct.shape} and {sizes.shape}"
        )
    rng = np.random.default_rng(rng)
    groups = len(correct)
    accuracies = []
    # Chunks keep the (resamples, G) index array small for large data sets.
    chunk = max(1, 2_000_000 // groups)
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        picks = rng.integers(groups, size=(count, groups))
        total = sizes[picks].sum(axis=1)
        accuracies.append(correct[picks].sum(axis=1) / np.maximum(total, 1.0))
    accuracies = np.concatenate(accuracies)
    tail = (1 - confidence) / 2
    low, high = np.quantile(accuracies, [tail, 1 - tail])
    return float(low), float(high)


def published_accuracy(
    dataset: str | None, k: int, stragglers: int, num_workers: int, wait: str = "first-k"
):
    """Return ApproxIFER's published ResNet-18 accuracy for a setting, or None if there is none.

    The published numbers use N = K + S and exactly S random stragglers per group, which is
    the "first-k" wait policy.
    """
    if dataset is None or num_workers != k + stragglers or wait != "first-k":
        return None
    return PUBLISHED_RESNET18.get(dataset, {}).get((k, stragglers))


# Columns of the tables: (row key, header, format).
_COLUMNS = [
    ("k", "K", "{}"),
    ("stragglers", "S", "{}"),
    ("num_workers", "N", "{}"),
    ("nodes", "nodes", "{}"),
    ("wait", "wait", "{}"),
    ("decode", "decode", "{}"),
    ("decoder", "decoder", "{}"),
    ("mean_results_used", "results used", "{:.2f}"),
]


# Columns added when a row locates wrong results.
_BYZANTINE_COLUMNS = [
    ("byzantine", "E", "{}"),
    ("locator", "locator", "{}"),
    ("attack", "attack", "{}"),
    ("mean_suspected", "dropped per group", "{:.2f}"),
]


def _interval_text(row: dict, key: str) -> str:
    value, low, high = row[key], row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is None or high is None or math.isnan(low):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def markdown_table(rows: list[dict]) -> str:
    """Format result rows as a Markdown table, with intervals in brackets."""
    with_published = any(row.get("published_accuracy") is not None for row in rows)
    columns = list(_COLUMNS)
    if any(row.get("byzantine") for row in rows):
        columns += _BYZANTINE_COLUMNS
    headers = [header for _, header, _ in columns] + ["base accuracy", "coded accuracy",
                                                       "agreement"]
    if with_published:
        headers.append("published coded")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = ["" if row.get(key) is None else form.format(row[key]) for key, _, form in columns]
        cells += [
            _interval_text(row, "accuracy_centralized"),
            _interval_text(row, "accuracy_coded"),
            f"{row['agreement']:.4f}",
        ]
        if with_published:
            published = row.get("published_accuracy")
            cells.append("" if published is None else f"{published:g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _setting_label(row: dict) -> str:
    label = f"K={row['k']} S={row['stragglers']}"
    if row["num_workers"] != row["k"] + row["stragglers"]:
        label += f" N={row['num_workers']}"
    if row["wait"] == "deadline":
        label += f"\ndeadline p={row['straggler_probability']:g}"
    elif row["wait"] != "first-k":
        label += f"\n{row['wait']}"
    return label


def _variant_label(row: dict, varying: list[str]) -> str:
    # Fitted shifts differ per setting, but they are one variant of the chart.
    parts = ["fitted" if str(row[key]).startswith("fitted") else str(row[key]) for key in varying]
    return ", ".join(parts) or "coded"


def plot_accuracy(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Draw base and coded accuracy per setting as grouped bars with interval error bars.

    One group of bars per (K, S, N, wait) setting: the base model, then one bar per variant
    (node family, decode space, decoder) that differs between rows. A dashed line marks the
    published coded accuracy where rows carry one.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(_setting_label(row) for row in rows))
    varying = [key for key in ("nodes", "decode", "decoder")
               if len({_variant_label(row, [key]) for row in rows}) > 1]
    variants = list(dict.fromkeys(_variant_label(row, varying) for row in rows))
    bars = 1 + len(variants)
    width = 0.8 / bars
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 + len(settings) * bars * 0.35), 4.5))
    positions = np.arange(len(settings))

    def error(row, key):
        low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
        if low is None or high is None or math.isnan(low):
            return [[0.0], [0.0]]
        return [[row[key] - low], [high - row[key]]]

    first_of_setting = {}
    for row in rows:
        first_of_setting.setdefault(_setting_label(row), row)
    for index, setting in enumerate(settings):
        row = first_of_setting[setting]
        axes.bar(positions[index] - 0.4 + width / 2, row["accuracy_centralized"], width,
                 yerr=error(row, "accuracy_centralized"), color="0.6", capsize=2,
                 label="base" if index == 0 else None)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labelled = set()
    for row in rows:
        index = settings.index(_setting_label(row))
        label = _variant_label(row, varying)
        variant = variants.index(label)
        x = positions[index] - 0.4 + width * (variant + 1.5)
        axes.bar(x, row["accuracy_coded"], width, yerr=error(row, "accuracy_coded"),
                 color=colors[variant % len(colors)], capsize=2,
                 label=None if label in labelled else label)
        labelled.add(label)

    for index, setting in enumerate(settings):
        published = first_of_setting[setting].get("published_accuracy")
        if published is not None:
            axes.hlines(published, positions[index] - 0.4, positions[index] + 0.4,
                        color="black", linewidth=1.5, linestyle="--",
                        label=None if "published" in labelled else "published coded")
            labelled.add("published")

    axes.set_xticks(positions, settings, fontsize=8)
    axes.set_ylabel("top-1 accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=9)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(prefix: str | Path, report: dict) -> list[Path]:
    """Write a report as PREFIX.json, PREFIX.csv, PREFIX.md and PREFIX.png.

    Parameters
    ----------
    prefix : str or Path
        Output path without extension; its folder is created.
    report : dict
        Metadata (model, data, seed, command, ...) and "rows", a list of result dicts.

    Returns
    -------
    list of Path
        The files written.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rows = report["rows"]
    if not rows:
        raise ValueError("report has no rows to write")
    paths = [prefix.with_name(prefix.name + suffix) for suffix in (".json", ".csv", ".md", ".png")]
    json_path, csv_path, markdown_path, png_path = paths

    json_path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    metadata = [
        f"- {key}: {value}"
        for key, value in report.items()
        if key != "rows" and value is not None
    ]
    markdown_path.write_text("\n".join(metadata) + "\n\n" + markdown_table(rows))
    plot_accuracy(rows, png_path, title=str(report.get("title", "")))
    return paths


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
