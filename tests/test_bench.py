"""Tests of the latency benchmark on real onnxruntime workers with tiny models."""

from __future__ import annotations

import csv
import json
import os
import threading

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from approxifer_onnx.bench import BenchModel, LatencyConfig, run_latency_benchmark
from approxifer_onnx.bench.models import write_random_cnn
from approxifer_onnx.bench.overhead import measure_coding_overhead, measure_throughput
from approxifer_onnx.bench.pool import WorkerPool
from approxifer_onnx.bench.report import check_claims
from approxifer_onnx.bench.runner import summarize_cell
from approxifer_onnx.bench.strategies import (
    ApproxiferStrategy,
    GroupContext,
    HedgedStrategy,
    ParityStrategy,
    ReplicationStrategy,
    UncodedStrategy,
)
from approxifer_onnx.bench.stragglers import BusyLoops, StragglerModel, parse_straggler_model
from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.model import OnnxModel

QUERY_SHAPE = (1, 4, 4)
NUM_CLASSES = 3
K = 4
TIMEOUT = 10.0  # seconds; only a broken run waits this long


def write_linear_model(path, seed: int = 0) -> tuple[str, np.ndarray]:
    """Write logits = flatten(x) @ weight, with no bias, so that f(sum of x) = sum of f(x)."""
    weight = np.random.default_rng(seed).normal(size=(16, NUM_CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "weight"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *QUERY_SHAPE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path), weight


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    path, weight = write_linear_model(tmp_path_factory.mktemp("bench") / "linear.onnx")
    return OnnxModel(path), weight


@pytest.fixture(scope="module")
def pool(linear):
    with WorkerPool(linear[0], 2 * K) as workers:
        yield workers


def make_context(pool, plan=None, seed=0):
    model = StragglerModel("test", plan)
    rng = np.random.default_rng(seed)
    return GroupContext(pool, lambda workers: model.draw(workers, pool.num_workers, rng), TIMEOUT)


def queries_and_logits(weight, seed=1):
    queries = np.random.default_rng(seed).random((K, *QUERY_SHAPE)).astype(np.float32)
    logits = queries.reshape(K, -1).astype(np.float64) @ weight.astype(np.float64)
    return queries, logits


@pytest.mark.parametrize("strategy_class", [UncodedStrategy, ReplicationStrategy, HedgedStrategy])
def test_uncoded_strategies_return_model_outputs(pool, linear, strategy_class):
    strategy = strategy_class(K)
    context = make_context(pool)
    strategy.prepare(context)
    queries, logits = queries_and_logits(linear[1])
    outcome = strategy.run_group(context, queries)
    assert outcome.complete
    np.testing.assert_allclose(outcome.outputs, logits, rtol=1e-5, atol=1e-5)
    assert outcome.degraded == 0


def test_replication_starts_two_runs_per_query(pool, linear):
    strategy = ReplicationStrategy(K)
    outcome = strategy.run_group(make_context(pool), queries_and_logits(linear[1])[0])
    assert outcome.runs == 2 * K
    assert strategy.workers_per_query == 2


def test_parity_reconstructs_late_query_of_linear_model(pool, linear):
    # Worker 0 hangs, so query 0 comes from the parity result; for a bias-free linear model
    # the stand-in parity decoding is exact.
    strategy = ParityStrategy(K)
    context = make_context(pool, FaultPlan(hang=(0,)))
    queries, logits = queries_and_logits(linear[1])
    outcome = strategy.run_group(context, queries)
    assert outcome.degraded == 1
    assert outcome.runs == K + 1
    np.testing.assert_allclose(outcome.outputs, logits, rtol=1e-4, atol=1e-4)


def test_hedged_sends_backup_only_for_slow_query(pool, linear):
    strategy = HedgedStrategy(K)
    # A hedging threshold of 0.5 s: far above a real run of this tiny model even on a loaded
    # machine, so only the hanging worker's query gets a backup.
    strategy.observed.extend([0.5] * 20)
    context = make_context(pool, FaultPlan(hang=(0,)))
    queries, logits = queries_and_logits(linear[1])
    outcome = strategy.run_group(context, queries)
    assert strategy.hedge_after() == pytest.approx(0.5, abs=1e-3)
    assert outcome.runs == K + 1
    np.testing.assert_allclose(outcome.outputs, logits, rtol=1e-5, atol=1e-5)


def test_hedged_sends_no_backup_before_enough_samples(pool, linear):
    strategy = HedgedStrategy(K)
    outcome = strategy.run_group(make_context(pool), queries_and_logits(linear[1])[0])
    assert strategy.hedge_after() is None
    assert outcome.runs == K


def test_uncoded_incomplete_when_worker_hangs(pool, linear):
    context = make_context(pool, FaultPlan(hang=(1,)))
    context.timeout = 0.2
    outcome = UncodedStrategy(K).run_group(context, queries_and_logits(linear[1])[0])
    assert not outcome.complete
    assert outcome.latency >= 0.2
    assert pool.drain(timeout=TIMEOUT)


@pytest.mark.parametrize("wait, deadline", [("first-k", None), ("deadline", 0.05)])
def test_approxifer_decodes_without_hanging_worker(pool, linear, wait, deadline):
    strategy = ApproxiferStrategy(K, 1, wait, deadline)
    context = make_context(pool, FaultPlan(hang=(0,)))
    strategy.prepare(context)
    outcome = strategy.run_group(context, queries_and_logits(linear[1])[0])
    assert outcome.complete
    assert outcome.outputs.shape == (K, NUM_CLASSES)
    assert outcome.runs == K + 1
    assert strategy.session.last_run.groups[0].answered == (1, 2, 3, 4)
    assert strategy.workers_per_query == (K + 1) / K


def test_approxifer_deadline_needs_seconds():
    with pytest.raises(ValueError, match="wait='deadline' needs deadline seconds"):
        ApproxiferStrategy(K, 1, "deadline", None)


def test_parse_straggler_models():
    random_late = parse_straggler_model("p=0.05", delay="pareto:0.05:1.5", slow_delay=0.1, busy_processes=2)
    assert random_late.plan.probability == 0.05
    assert random_late.plan.random_delay.family == "pareto"
    slow = parse_straggler_model("slow-worker", delay="1", slow_delay=0.1, busy_processes=2)
    assert slow.plan.delays == {0: 0.1}
    contention = parse_straggler_model("cpu-contention", delay="1", slow_delay=0.1, busy_processes=2)
    assert contention.plan is None
    assert contention.busy_processes == 2


@pytest.mark.parametrize("text, message", [
    ("p=high", "'high' is not a probability"),
    ("p=1.5", r"probability must be in \[0, 1\]"),
    ("flaky", "unknown straggler model 'flaky'"),
])
def test_parse_straggler_model_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        parse_straggler_model(text, delay="0.1", slow_delay=0.1, busy_processes=1)


def test_busy_loops_pin_and_stop_processes():
    thread_id = threading.get_native_id()
    before = os.sched_getaffinity(thread_id)
    with BusyLoops(2, thread_id) as busy:
        assert len(busy.pids) == 2
        for pid in busy.pids:
            assert os.sched_getaffinity(pid) == {busy.cpu}
        assert os.sched_getaffinity(thread_id) == {busy.cpu}
        processes = list(busy._processes)
    assert all(process.poll() is not None for process in processes)
    assert os.sched_getaffinity(thread_id) == before


def test_summarize_cell_quantiles_and_throughput():
    summary = summarize_cell(np.arange(1, 1001) / 1000.0, wall_seconds=2.0, queries=4000)
    assert summary["latency_p50_ms"] == pytest.approx(500.5)
    assert summary["latency_p99_ms"] == pytest.approx(990.01)
    assert summary["latency_max_ms"] == pytest.approx(1000.0)
    assert summary["throughput_qps"] == 2000.0


def make_record(strategy, p99, workers):
    return {"model": "m", "k": 8, "straggler_model": "p=0.05", "strategy": strategy, "latency_p99_ms": p99,
            "workers_per_query": workers, "accuracy": 0.8, "accuracy_note": None}


def test_check_claims_flags_each_condition():
    records = [make_record("uncoded", 100.0, 1.0), make_record("replication", 20.0, 2.0),
               make_record("approxifer-first-k-s1", 23.0, 1.125), make_record("approxifer-first-k-s2", 30.0, 1.25)]
    throughput = [{"model": "m", "k": 8, "stragglers": 1, "ratio": 0.81, "target": 0.8, "met": True}]
    checks = {check["strategy"]: check for check in check_claims(records, throughput)}
    assert checks["approxifer-first-k-s1"]["met"]
    second = checks["approxifer-first-k-s2"]
    assert second["met_uncoded"]
    assert not second["met_replication"]  # 30 > 1.2 * 20
    assert not second["met_workers"]  # 1.25 / 2 > 0.6
    assert not second["met"]
    assert checks["approxifer"]["met"]


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.random((40, *QUERY_SHAPE)).astype(np.float32), rng.integers(NUM_CLASSES, size=40)


def test_benchmark_records_resources_and_accuracy(linear, tiny_data):
    model, weight = linear
    inputs = tiny_data[0]
    labels = (inputs.reshape(len(inputs), -1) @ weight).argmax(axis=1)  # the model's own predictions
    config = LatencyConfig(ks=(K,), straggler_models=("none", "slow-worker"), groups=4, warmup_groups=1,
                           slow_delay=0.01)
    results = run_latency_benchmark([BenchModel(model.path, "linear", True)], inputs, labels, config)
    rows = {(r["straggler_model"], r["strategy"]): r for r in results.records}
    assert len(rows) == 2 * 8
    expected_workers = {"uncoded": 1, "replication": 2, "hedged": 2, "parity": (K + 1) / K,
                        "approxifer-first-k-s1": (K + 1) / K, "approxifer-first-k-s2": (K + 2) / K,
                        "approxifer-deadline-s1": (K + 1) / K, "approxifer-deadline-s2": (K + 2) / K}
    for (_, strategy), row in rows.items():
        assert row["workers_per_query"] == expected_workers[strategy]
        assert row["groups"] == 4
        assert row["incomplete_groups"] == 0
    assert rows["none", "replication"]["runs_per_query"] == 2
    assert rows["none", "parity"]["accuracy"] is None
    assert rows["none", "parity"]["degraded_fraction"] <= 1 / K  # at most one reconstruction per group
    for strategy in ("uncoded", "replication", "hedged"):
        assert rows["slow-worker", strategy]["accuracy"] == 1.0
    assert 0 <= rows["slow-worker", "approxifer-first-k-s1"]["accuracy"] <= 1
    assert len(results.latencies_ms["linear", K, "slow-worker", "uncoded"]) == 4


def test_overhead_rows_per_k(linear):
    rows = measure_coding_overhead(linear[0].path, "linear", (2, 4), groups=4, repeats=1)
    assert [row["k"] for row in rows] == [2, 4]
    assert [row["num_workers"] for row in rows] == [3, 5]
    assert all(row["model_ms_per_group"] > 0 and row["coding_share"] > 0 for row in rows)


def test_throughput_limit_is_k_over_n(linear):
    result = measure_throughput(linear[0].path, "linear", k=8, stragglers=1, batch=16, repeats=1)
    assert result["limit"] == 8 / 9
    assert result["target"] == pytest.approx(0.9 * 8 / 9)
    assert result["plain_qps"] > 0
    assert result["coded_qps"] > 0
    assert result["met"] == (result["ratio"] >= result["target"])


def test_random_cnn_runs_with_declared_shapes(tmp_path):
    path = write_random_cnn(tmp_path / "cnn.onnx", widths=(4, 8), query_shape=QUERY_SHAPE, num_classes=5)
    model = OnnxModel(path)
    assert model.query_shape == QUERY_SHAPE
    outputs = model.predict(np.zeros((3, *QUERY_SHAPE), np.float32))[0]
    assert outputs.shape == (3, 5)


def test_bench_command_writes_results(linear, tmp_path):
    from approxifer_onnx_cli.main import main

    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.integers(0, 256, size=(30, 4, 4), dtype=np.uint8), y=rng.integers(NUM_CLASSES, size=30))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "bench", "--model", str(linear[0].path), "--no-random-cnn", "--data", str(data), "-k", "4",
        "--groups", "3", "--warmup-groups", "0", "--straggler-model", "p=0.05", "--delay", "0.01",
        "--overhead-k", "4", "--no-throughput", "--output-dir", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    with open(out / "latency.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    assert {row["strategy"] for row in rows} >= {"uncoded", "replication", "hedged", "parity"}
    summary = json.loads((out / "results.json").read_text())
    assert len(summary["metadata"]["before"]["load_average_1_5_15"]) == 3
    assert len([c for c in summary["claims"] if c["claim"].startswith("p99")]) == 4
    assert (out / "latency-cdf-linear-k4-p0.05.png").exists()
    assert (out / "p99-vs-workers-linear-k4.png").exists()


def test_bench_command_rejects_unknown_straggler_model(linear, tmp_path):
    from approxifer_onnx_cli.main import main

    result = CliRunner().invoke(main, ["bench", "--model", str(linear[0].path), "--no-random-cnn",
                                       "--straggler-model", "sometimes", "--output-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown straggler model 'sometimes'" in result.output
