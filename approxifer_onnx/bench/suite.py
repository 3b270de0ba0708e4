"""One full benchmark: latency of every strategy, coding overhead and throughput, then reports."""

from __future__ import annotations

import datetime
import logging
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .overhead import measure_coding_overhead, measure_throughput
from .report import write_results
from .runner import BenchModel, LatencyConfig, run_latency_benchmark

__all__ = ["run_suite"]

logger = logging.getLogger(__name__)


def _machine_state() -> dict:
    return {
        "load_average_1_5_15": list(os.getloadavg()),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_suite(models: list[BenchModel], inputs: np.ndarray, labels: np.ndarray | None, config: LatencyConfig,
              output_dir: Path, *, overhead_ks: tuple[int, ...] = (4, 8, 12, 16), throughput: bool = True,
              data_source: str = "", command: list[str] | None = None, progress: bool = False) -> dict:
    """Run the latency benchmark, the overhead measurements, and write every result file.

    Parameters
    ----------
    models : list of BenchModel
    inputs, labels : numpy.ndarray
        Test inputs (B, *query_shape) and their labels (B,), or None.
    config : LatencyConfig
    output_dir : Path
    overhead_ks : tuple of int
        K values of the encode and decode timing; empty skips it.
    throughput : bool
        Measure coded against plain throughput at K=8, S=1 for every model.
    data_source : str
        Where the inputs came from, for the metadata.
    command : list of str, optional
        The command line, for the metadata.
    progress : bool

    Returns
    -------
    dict
        ``claims`` (the checks of `report.check_claims`), ``files`` and ``metadata``.
    """
    before = _machine_state()
    results = run_latency_benchmark(models, inputs, labels, config, progress=progress)
    overhead, throughputs = [], []
    for model in models:
        if overhead_ks:
            overhead += measure_coding_overhead(model.path, model.name, overhead_ks, rng=config.seed)
        if throughput:
            throughputs.append(measure_throughput(model.path, model.name, k=8, stragglers=1, rng=config.seed))
    results.metadata = {
        "config": asdict(config),
        "models": [{"name": m.name, "path": str(m.path), "trained": m.trained} for m in models],
        "data": data_source,
        "inputs": int(len(inputs)),
        "command": command,
        "cpus": len(os.sched_getaffinity(0)),
        "niceness": os.nice(0),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "before": before,
        "after": _machine_state(),
        "notes": [
            "All workers are threads of one process on the same CPUs; injected delays are sleeps "
            "and cost no CPU, model runs compete for the CPUs.",
            "parity is a latency stand-in for ParM: its parity worker runs the base model, so its "
            "accuracy is not reported.",
        ],
    }
    written = write_results(output_dir, results, overhead, throughputs)
    written["metadata"] = results.metadata
    written["records"] = results.records
    return written
