"""Latency and cost of coded inference against uncoded serving, replication, hedging and parity.

`run_latency_benchmark` runs every strategy of `strategies` on one shared `pool.WorkerPool`
under the straggler models of `stragglers`. `overhead` measures the cost of coding itself, and
`report` writes CSV, JSON, plots and the checks of the expected results.
"""

from .runner import BenchModel, LatencyConfig, LatencyResults, run_latency_benchmark

__all__ = ["BenchModel", "LatencyConfig", "LatencyResults", "run_latency_benchmark"]
