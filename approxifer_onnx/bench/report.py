"""Write the latency benchmark's CSV, JSON and plots, and check the expected results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

__all__ = ["check_claims", "format_table", "plot_latency_cdfs", "plot_p99_vs_resources", "write_csv", "write_results"]

#: At p = 0.05, ApproxIFER's p99 should be at most this share of the uncoded p99 ...
UNCODED_P99_SHARE = 0.5
#: ... and at most this multiple of replication's p99 ...
REPLICATION_P99_FACTOR = 1.2
#: ... while provisioning at most this share of replication's workers.
REPLICATION_WORKER_SHARE = 0.6
CLAIM_STRAGGLER_MODEL = "p=0.05"


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write dict rows to CSV with the union of their keys as header, in first-seen order."""
    header: list[str] = []
    for row in rows:
        header += [key for key in row if key not in header]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def check_claims(records: list[dict], throughput: list[dict]) -> list[dict]:
    """Check the expected results against the measurements.

    Claim 1, for each model and K, at straggler model p=0.05, for each ApproxIFER strategy:
    p99 <= 0.5 x uncoded p99, p99 <= 1.2 x replication p99, workers <= 0.6 x replication's.
    Claim 2, for each throughput row with K=8 and S=1: coded throughput >= 0.9 x K/N x plain.

    Returns
    -------
    list of dict
        One row per check with ``claim``, the measured values and ``met``.
    """
    checks = []
    cells = {(r["model"], r["k"]) for r in records if r["straggler_model"] == CLAIM_STRAGGLER_MODEL}
    for model, k in sorted(cells):
        cell = {r["strategy"]: r for r in records
                if (r["model"], r["k"], r["straggler_model"]) == (model, k, CLAIM_STRAGGLER_MODEL)}
        uncoded, replication = cell.get("uncoded"), cell.get("replication")
        if uncoded is None or replication is None:
            continue
        for name, row in cell.items():
            if not name.startswith("approxifer"):
                continue
            p99 = row["latency_p99_ms"]
            worker_share = row["workers_per_query"] / replication["workers_per_query"]
            check = {
                "claim": "p99 vs uncoded and replication at p=0.05",
                "model": model, "k": k, "strategy": name,
                "latency_p99_ms": p99,
                "uncoded_p99_ms": uncoded["latency_p99_ms"],
                "replication_p99_ms": replication["latency_p99_ms"],
                "share_of_uncoded_p99": p99 / uncoded["latency_p99_ms"],
                "multiple_of_replication_p99": p99 / replication["latency_p99_ms"],
                "share_of_replication_workers": worker_share,
                "accuracy": row["accuracy"],
                "accuracy_note": row["accuracy_note"],
            }
            check["met_uncoded"] = check["share_of_uncoded_p99"] <= UNCODED_P99_SHARE
            check["met_replication"] = check["multiple_of_replication_p99"] <= REPLICATION_P99_FACTOR
            check["met_workers"] = worker_share <= REPLICATION_WORKER_SHARE + 1e-12
            check["met"] = check["met_uncoded"] and check["met_replication"] and check["met_workers"]
            checks.append(check)
    for row in throughput:
        if row["k"] == 8 and row["stragglers"] == 1:
            checks.append({
                "claim": "coded throughput >= 0.9 x K/N x plain at K=8, S=1",
                "model": row["model"], "k": row["k"], "strategy": "approxifer",
                "ratio": row["ratio"], "target": row["target"], "met": row["met"],
            })
    return checks


def plot_latency_cdfs(latencies_ms: dict[tuple, np.ndarray], path: Path, *, straggler_model: str) -> list[Path]:
    """Plot one latency CDF figure per (model, K) for one straggler model; return the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    cells = sorted({(model, k) for model, k, name, _ in latencies_ms if name == straggler_model})
    for model, k in cells:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for (m, kk, name, strategy), values in latencies_ms.items():
            if (m, kk, name) != (model, k, straggler_model):
                continue
            ordered = np.sort(values)
            tail = 1.0 - np.arange(len(ordered)) / len(ordered)  # P(latency >= x)
            axes.step(ordered, tail, where="post", label=strategy)
        axes.set(xscale="log", yscale="log", xlabel="group latency (ms)", ylabel="P(latency >= x)",
                 title=f"{model}, K={k}, stragglers {straggler_model}")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        out = path.parent / f"{path.stem}-{model}-k{k}-{straggler_model.replace('=', '')}{path.suffix}"
        figure.savefig(out, dpi=110)
        plt.close(figure)
        written.append(out)
    return written


def plot_p99_vs_resources(records: list[dict], path: Path) -> list[Path]:
    """Plot p99 latency against workers per query, one panel per straggler model, per (model, K)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for model, k in sorted({(r["model"], r["k"]) for r in records}):
        rows = [r for r in records if (r["model"], r["k"]) == (model, k)]
        names = list(dict.fromkeys(r["straggler_model"] for r in rows))
        figure, panels = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.8), squeeze=False)
        for axes, name in zip(panels[0], names):
            for row in (r for r in rows if r["straggler_model"] == name):
                axes.scatter(row["workers_per_query"], row["latency_p99_ms"], s=25)
                axes.annotate(row["strategy"].replace("approxifer-", "A-"),
                              (row["workers_per_query"], row["latency_p99_ms"]), fontsize=6)
            axes.set(yscale="log", xlabel="workers per query", title=name)
            axes.grid(True, alpha=0.3)
        panels[0][0].set_ylabel("p99 group latency (ms)")
        figure.suptitle(f"{model}, K={k}")
        figure.tight_layout()
        out = path.parent / f"{path.stem}-{model}-k{k}{path.suffix}"
        figure.savefig(out, dpi=110)
        plt.close(figure)
        written.append(out)
    return written


def write_results(output_dir: Path, results, overhead: list[dict], throughput: list[dict]) -> dict:
    """Write CSV, JSON, raw latencies and plots to `output_dir`; return the checks and files."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checks = check_claims(results.records, throughput)
    files = []
    if results.records:
        write_csv(output_dir / "latency.csv", results.records)
        np.savez_compressed(
            output_dir / "latencies_ms.npz",
            **{"|".join(map(str, key)): values for key, values in results.latencies_ms.items()},
        )
        files += [output_dir / "latency.csv", output_dir / "latencies_ms.npz"]
        for name in sorted({key[2] for key in results.latencies_ms}):
            files += plot_latency_cdfs(results.latencies_ms, output_dir / "latency-cdf.png", straggler_model=name)
        files += plot_p99_vs_resources(results.records, output_dir / "p99-vs-workers.png")
    if overhead:
        write_csv(output_dir / "overhead.csv", overhead)
        files.append(output_dir / "overhead.csv")
    if throughput:
        write_csv(output_dir / "throughput.csv", throughput)
        files.append(output_dir / "throughput.csv")
    if checks:
        write_csv(output_dir / "claims.csv", checks)
        files.append(output_dir / "claims.csv")
    summary = {"metadata": results.metadata, "records": results.records, "overhead": overhead,
               "throughput": throughput, "claims": checks}
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    files.append(output_dir / "results.json")
    return {"claims": checks, "files": files}


def format_table(records: list[dict], straggler_model: str | None = None) -> str:
    """Format summary rows as a Markdown table, optionally for one straggler model."""
    header = ("| model | K | stragglers | strategy | workers/query | runs/query | p50 ms | p99 ms | "
              "p99.9 ms | throughput q/s | accuracy |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in records:
        if straggler_model is not None and r["straggler_model"] != straggler_model:
            continue
        accuracy = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        lines.append(
            f"| {r['model']} | {r['k']} | {r['straggler_model']} | {r['strategy']} | "
            f"{r['workers_per_query']:.3f} | {r['runs_per_query']:.3f} | {r['latency_p50_ms']:.2f} | "
            f"{r['latency_p99_ms']:.1f} | {r['latency_p999_ms']:.1f} | {r['throughput_qps']:.0f} | {accuracy} |"
        )
    return "\n".join(lines)

