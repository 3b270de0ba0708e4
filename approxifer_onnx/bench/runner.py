"""Run every strategy under every straggler model on the same model, inputs and worker pool."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..model import OnnxModel
from .pool import WorkerPool
from .strategies import STRATEGY_NAMES, GroupContext, Strategy, UncodedStrategy, build_strategies
from .stragglers import BusyLoops, StragglerModel, parse_straggler_model

__all__ = ["BenchModel", "LatencyConfig", "LatencyResults", "run_latency_benchmark", "summarize_cell"]

logger = logging.getLogger(__name__)

#: Straggler models of the default configuration.
DEFAULT_STRAGGLER_MODELS = ("p=0.01", "p=0.05", "p=0.1", "slow-worker", "cpu-contention")

RANDOM_WEIGHTS_NOTE = "random weights: latency only, accuracy is not meaningful"


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark.

    Parameters
    ----------
    path : Path
    name : str
        Label in the results.
    trained : bool
        Whether the model is trained on the data, so that accuracy against labels means something.
    """

    path: Path
    name: str
    trained: bool = True


@dataclass(frozen=True)
class LatencyConfig:
    """One benchmark run.

    Parameters
    ----------
    ks : tuple of int
        Queries per group K; every strategy runs at every K.
    straggler_models : tuple of str
        Names understood by `parse_straggler_model`.
    strategies : tuple of str
        Subset of `STRATEGY_NAMES`.
    stragglers : tuple of int
        S values of the ApproxIFER strategies.
    waits : tuple of str
        Wait policies of the ApproxIFER strategies.
    groups : int
        Measured groups per strategy and cell.
    warmup_groups : int
        Groups run before measuring; they also seed the hedging threshold.
    delay : str
        Delay distribution of a late run, e.g. ``"pareto:0.02:1.5"`` (minimum 20 ms, tail index 1.5).
    slow_delay : float, seconds
        Delay of the persistently slow worker in every run.
    busy_processes : int
        Busy-loop processes that share the contended worker's CPU.
    deadline_factor : float
        The ApproxIFER deadline is this factor times the median group latency of the uncoded
        strategy without stragglers, measured at the start for each model and K.
    timeout : float, seconds
        A group that lacks an output for some query by then counts as incomplete, with this latency.
    seed : int
    """

    ks: tuple[int, ...] = (8,)
    straggler_models: tuple[str, ...] = DEFAULT_STRAGGLER_MODELS
    strategies: tuple[str, ...] = STRATEGY_NAMES
    stragglers: tuple[int, ...] = (1, 2)
    waits: tuple[str, ...] = ("first-k", "deadline")
    groups: int = 1000
    warmup_groups: int = 50
    delay: str = "pareto:0.02:1.5"
    slow_delay: float = 0.02
    busy_processes: int = 3
    deadline_factor: float = 2.0
    timeout: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("groups", "warmup_groups"):
            value = getattr(self, name)
            if value < (1 if name == "groups" else 0):
                raise ValueError(f"{name} must be >= {1 if name == 'groups' else 0}, got {name}={value}")
        if not self.ks or min(self.ks) < 2:
            raise ValueError(f"every K must be >= 2 (parity needs two queries per group), got ks={self.ks}")
        if self.deadline_factor <= 0 or self.timeout <= 0:
            raise ValueError(
                f"deadline_factor and timeout must be > 0, got deadline_factor={self.deadline_factor}, "
                f"timeout={self.timeout}"
            )


@dataclass
class LatencyResults:
    """Measurements of one benchmark run.

    Attributes
    ----------
    records : list of dict
        One summary row per (model, K, straggler model, strategy); field names carry units.
    latencies_ms : dict of tuple to numpy.ndarray
        (model, K, straggler model, strategy) -> the latency of every measured group, in ms.
    metadata : dict
        Configuration, seeds, CPU count and load averages.
    """

    records: list[dict] = field(default_factory=list)
    latencies_ms: dict[tuple, np.ndarray] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def summarize_cell(latencies_s: np.ndarray, wall_seconds: float, queries: int) -> dict:
    """Return latency quantiles in ms and the throughput of one cell.

    Parameters
    ----------
    latencies_s : numpy.ndarray, shape (groups,)
        Group latencies in seconds.
    wall_seconds : float
        Wall time of the measured groups, dispatch between groups included.
    queries : int
        Queries served or attempted in that time.
    """
    latencies_ms = 1000.0 * np.asarray(latencies_s, dtype=np.float64)
    p50, p99, p999 = np.quantile(latencies_ms, [0.5, 0.99, 0.999])
    return {
        "latency_p50_ms": float(p50),
        "latency_p99_ms": float(p99),
        "latency_p999_ms": float(p999),
        "latency_mean_ms": float(latencies_ms.mean()),
        "latency_max_ms": float(latencies_ms.max()),
        "throughput_qps": queries / wall_seconds if wall_seconds > 0 else math.nan,
    }


def _cell_seed(seed: int, *parts) -> int:
    # A stable seed per cell, so every strategy of a cell gets the same inputs.
    return zlib.crc32(repr((seed, *parts)).encode())


def _draw_group_indices(count: int, groups: int, k: int, rng: np.random.Generator) -> np.ndarray:
    # K distinct inputs per group, as in the ApproxIFER protocol.
    return np.stack([rng.choice(count, size=k, replace=False) for _ in range(groups)])


def _run_strategy(strategy: Strategy, context: GroupContext, inputs: np.ndarray, indices: np.ndarray,
                  warmup: int, progress: bool, label: str):
    strategy.prepare(context)
    outcomes = []
    for number, group in enumerate(tqdm(indices, desc=label, disable=not progress, leave=False, unit="group")):
        if number == warmup:
            context.pool.drain()
            started = time.monotonic()
        outcome = strategy.run_group(context, inputs[group])
        if number >= warmup:
            outcomes.append(outcome)
    wall = time.monotonic() - started
    context.pool.drain()
    return outcomes, wall


def _score(outcomes, labels: np.ndarray | None, indices: np.ndarray) -> tuple[float | None, int, int]:
    # Returns (accuracy over the queries of complete groups, degraded queries, scored queries).
    correct = scored = degraded = 0
    for outcome, group in zip(outcomes, indices):
        if outcome.outputs is None:
            continue
        degraded += outcome.degraded
        scored += len(group)
        if labels is not None:
            correct += int(np.sum(outcome.outputs.argmax(axis=1) == labels[group]))
    accuracy = correct / scored if labels is not None and scored else None
    return accuracy, degraded, scored


def _base_latency(pool: WorkerPool, k: int, inputs: np.ndarray, rng: np.random.Generator,
                  groups: int, timeout: float) -> float:
    """Median group latency, in seconds, of the uncoded strategy without stragglers."""
    strategy = UncodedStrategy(k)
    context = GroupContext(pool, lambda workers: StragglerModel("none").draw(workers, pool.num_workers, rng), timeout)
    indices = _draw_group_indices(len(inputs), max(groups, 5), k, rng)
    outcomes, _ = _run_strategy(strategy, context, inputs, indices, warmup=0, progress=False, label="base")
    return float(np.median([outcome.latency for outcome in outcomes]))


def run_latency_benchmark(models: list[BenchModel], inputs: np.ndarray, labels: np.ndarray | None,
                          config: LatencyConfig, *, progress: bool = False) -> LatencyResults:
    """Measure every strategy under every straggler model, for each model and K.

    Parameters
    ----------
    models : list of BenchModel
    inputs : numpy.ndarray, shape (B, *query_shape)
        The pool of test inputs; each group draws K distinct rows.
    labels : numpy.ndarray of int, shape (B,), or None
    config : LatencyConfig
    progress : bool
        Show progress bars.

    Returns
    -------
    LatencyResults
    """
    straggler_models = [
        parse_straggler_model(name, delay=config.delay, slow_delay=config.slow_delay,
                              busy_processes=config.busy_processes)
        for name in config.straggler_models
    ]
    results = LatencyResults()
    for bench_model in models:
        model = OnnxModel(bench_model.path)
        if model.query_shape != inputs.shape[1:]:
            raise ValueError(
                f"model {bench_model.name} takes queries of shape {model.query_shape}, but the data has "
                f"shape {inputs.shape[1:]}; pick data that matches the model"
            )
        pool_size = max(max(2 * k, k + max(config.stragglers, default=1), k + 1) for k in config.ks)
        with WorkerPool(model, pool_size) as pool:
            for k in config.ks:
                base_rng = np.random.default_rng(_cell_seed(config.seed, bench_model.name, k, "base"))
                base = _base_latency(pool, k, inputs, base_rng, config.warmup_groups, config.timeout)
                deadline = config.deadline_factor * base
                logger.info("%s K=%d: base latency %.2f ms, deadline %.2f ms", bench_model.name, k,
                            1000 * base, 1000 * deadline)
                for straggler_model in straggler_models:
                    _run_cell(results, pool, bench_model, k, straggler_model, base, deadline, inputs, labels,
                              config, progress)
    return results


def _run_cell(results: LatencyResults, pool: WorkerPool, bench_model: BenchModel, k: int,
              straggler_model: StragglerModel, base: float, deadline: float, inputs: np.ndarray,
              labels: np.ndarray | None, config: LatencyConfig, progress: bool) -> None:
    indices = _draw_group_indices(
        len(inputs), config.warmup_groups + config.groups, k,
        np.random.default_rng(_cell_seed(config.seed, bench_model.name, k, straggler_model.name)),
    )
    measured = indices[config.warmup_groups:]
    strategies = build_strategies(k, names=config.strategies, stragglers=config.stragglers,
                                  waits=config.waits, deadline=deadline)
    contention = (BusyLoops(straggler_model.busy_processes, pool.native_id(0))
                  if straggler_model.busy_processes else contextlib.nullcontext())
    with contention:
        for strategy in strategies:
            fault_rng = np.random.default_rng(
                _cell_seed(config.seed, bench_model.name, k, straggler_model.name, strategy.name, "faults"))
            context = GroupContext(
                pool,
                lambda workers, rng=fault_rng: straggler_model.draw(workers, pool.num_workers, rng),
                config.timeout,
            )
            label = f"{bench_model.name} K={k} {straggler_model.name} {strategy.name}"
            outcomes, wall = _run_strategy(strategy, context, inputs, indices, config.warmup_groups,
                                           progress, label)
            latencies = np.array([outcome.latency for outcome in outcomes])
            accuracy, degraded, scored = _score(outcomes, labels, measured)
            record = {
                "model": bench_model.name,
                "model_trained": bench_model.trained,
                **strategy.describe(),
                "workers_per_query": strategy.workers_per_query,
                "runs_per_query": sum(outcome.runs for outcome in outcomes) / (k * len(outcomes)),
                "straggler_model": straggler_model.name,
                "straggler_plan": straggler_model.describe(),
                "groups": len(outcomes),
                "incomplete_groups": sum(not outcome.complete for outcome in outcomes),
                **summarize_cell(latencies, wall, k * len(outcomes)),
                "base_latency_ms": 1000 * base,
                "accuracy": accuracy if bench_model.trained and strategy.accuracy_note is None else None,
                "accuracy_note": strategy.accuracy_note or (None if bench_model.trained else RANDOM_WEIGHTS_NOTE),
                "degraded_fraction": degraded / scored if scored else None,
            }
            if strategy.name == "hedged":
                hedge_after = strategy.hedge_after()
                record["hedge_after_ms"] = None if hedge_after is None else 1000 * hedge_after
            results.records.append(record)
            results.latencies_ms[(bench_model.name, k, straggler_model.name, strategy.name)] = 1000 * latencies
            logger.info("%s: p50 %.1f ms, p99 %.1f ms", label, record["latency_p50_ms"], record["latency_p99_ms"])
