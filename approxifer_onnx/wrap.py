"""Run a whole data set through a coded session and summarise accuracy, latency and stragglers."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .evaluation import predict_in_batches
from .session import CodedInferenceSession

__all__ = ["OUTPUT_FORMATS", "WrapResult", "wrap_dataset", "write_predictions"]

logger = logging.getLogger(__name__)

#: Per-input prediction files, by file extension.
OUTPUT_FORMATS = (".jsonl", ".csv")


@dataclass
class WrapResult:
    """Predictions and measurements of one pass over a data set.

    Attributes
    ----------
    coded : ndarray of int, shape (B,)
        Argmax of the decoded outputs.
    centralized : ndarray of int, shape (B,)
        Argmax of the model run directly, without coding.
    labels : ndarray of int, shape (B,), or None
    call_latencies : list of float
        Wall time of each coded call, in seconds.
    late_per_call, failed_per_call : list of int
        Late and failed workers in each call.
    suspected_per_call : list of int
        Results dropped as wrong by the error locator in each call, summed over its groups.
    approximate_groups, exact_groups : int
        Groups decoded approximately, and exactly (every query answered at its own node).
    """

    coded: np.ndarray
    centralized: np.ndarray
    labels: np.ndarray | None
    call_latencies: list[float] = field(default_factory=list)
    late_per_call: list[int] = field(default_factory=list)
    failed_per_call: list[int] = field(default_factory=list)
    suspected_per_call: list[int] = field(default_factory=list)
    approximate_groups: int = 0
    exact_groups: int = 0

    def summary(self, session: CodedInferenceSession) -> dict:
        """Return the summary as a JSON-ready dict."""
        latencies_ms = np.asarray(self.call_latencies) * 1000.0
        summary = {
            "model": str(session.model.path),
            "num_inputs": int(len(self.coded)),
            "k": session.k,
            "num_workers": session.num_workers,
            "stragglers": session.code.stragglers,
            "byzantine": session.byzantine,
            "locator": session.locator if session.byzantine else None,
            "locator_tolerance": session.locator_tolerance if session.byzantine else None,
            "groups": self.exact_groups + self.approximate_groups,
            "nodes": session.code.node_family,
            "wait": session.wait,
            "decode": session.decode_space,
            "providers": session.get_providers(),
            "accuracy_centralized": None,
            "accuracy_coded": None,
            "agreement": float(np.mean(self.coded == self.centralized)) if len(self.coded) else None,
            "calls": len(self.call_latencies),
            "latency_mean_ms": _stat(np.mean, latencies_ms),
            "latency_p50_ms": _stat(np.percentile, latencies_ms, 50),
            "latency_p99_ms": _stat(np.percentile, latencies_ms, 99),
            "latency_max_ms": _stat(np.max, latencies_ms),
            "late_workers_total": int(sum(self.late_per_call)),
            "failed_workers_total": int(sum(self.failed_per_call)),
            "calls_with_stragglers": int(
                sum(1 for late, failed in zip(self.late_per_call, self.failed_per_call) if late or failed)
            ),
            "suspected_results_total": int(sum(self.suspected_per_call)),
            "approximate_groups": self.approximate_groups,
            "exact_groups": self.exact_groups,
        }
        if self.labels is not None and len(self.labels):
            summary["accuracy_centralized"] = float(np.mean(self.centralized == self.labels))
            summary["accuracy_coded"] = float(np.mean(self.coded == self.labels))
        return summary


def _stat(function, values, *args):
    return float(function(values, *args)) if len(values) else None


def wrap_dataset(
    session: CodedInferenceSession,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> WrapResult:
    """Classify `inputs` through `session`, `batch_size` queries per coded call.

    Parameters
    ----------
    session : CodedInferenceSession
    inputs : ndarray, shape (B, *query_shape)
    labels : ndarray of int, shape (B,), optional
    batch_size : int, >= 1
        Queries per call; a multiple of K avoids padding.
    progress : bool
        Show a progress bar over calls.

    Returns
    -------
    WrapResult
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got batch_size={batch_size}")
    if labels is not None and len(labels) != len(inputs):
        raise ValueError(f"got {len(inputs)} inputs but {len(labels)} labels")

    name = session.get_outputs()[0].name
    input_name = session.get_inputs()[0].name
    centralized = predict_in_batches(session.model, inputs, output_name=name).argmax(axis=1)
    result = WrapResult(
        coded=np.empty(len(inputs), dtype=np.int64), centralized=centralized, labels=labels
    )

    starts = range(0, len(inputs), batch_size)
    bar = tqdm(starts, desc="coded inference", unit="call", disable=not progress)
    for start in bar:
        batch = inputs[start : start + batch_size]
        outputs = session.run([name], {input_name: batch})[0]
        result.coded[start : start + len(batch)] = outputs.argmax(axis=1)
        report = session.last_run
        result.call_latencies.append(report.wall_time)
        first = report.groups[0]
        result.late_per_call.append(len(first.late))
        result.failed_per_call.append(len(first.failed))
        result.suspected_per_call.append(sum(len(group.suspected) for group in report.groups))
        for group in report.groups:
            if group.approximate:
                result.approximate_groups += 1
            else:
                result.exact_groups += 1
        if labels is not None:
            done = start + len(batch)
            bar.set_postfix(accuracy=f"{np.mean(result.coded[:done] == labels[:done]):.3f}")
    return result


def write_predictions(path: str | Path, result: WrapResult) -> Path:
    """Write one row per input (index, coded and centralized prediction, label) as JSONL or CSV."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(
            f"cannot write predictions to {str(path)!r}: unknown extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(OUTPUT_FORMATS)}"
        )
    rows = []
    for index in range(len(result.coded)):
        row = {
            "index": index,
            "prediction_coded": int(result.coded[index]),
            "prediction_centralized": int(result.centralized[index]),
        }
        if result.labels is not None:
            row["label"] = int(result.labels[index])
        rows.append(row)

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if suffix == ".jsonl":
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        else:
            fields = list(rows[0]) if rows else ["index", "prediction_coded", "prediction_centralized"]
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return path
