"""Tests of LocalBackend on real onnxruntime sessions, with injected and real faults."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from approxifer_onnx.backends import Backend, GatherResult, LocalBackend
from approxifer_onnx.exceptions import NotEnoughResultsError
from approxifer_onnx.faults import DelayDistribution, FaultPlan
from approxifer_onnx.model import OnnxModel
from tests.fixtures import IR_VERSION, OPSET, QUERY_SHAPE, write_linear_classifier

NUM_WORKERS = 4
GROUPS = 3
NUM_CLASSES = 3

# Generous allowance, in seconds, on top of a deadline or of work that should take milliseconds.
# The test machine is shared, so only a wait that clearly overran fails.
MARGIN = 3.0

# Width and batch of the slow model's MatMul chain; its depth is chosen at run time.
SLOW_WIDTH = 512
SLOW_BATCH = 1024


def save_model(graph: onnx.GraphProto, path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


def write_fragile_model(path) -> str:
    """Write y = log(x) + table[int(x)] for x of shape (N, 4): a real model with two real faults.

    A query with a negative value gives NaN (the logarithm), and one with a value of 10 or more
    makes onnxruntime raise (the table lookup is out of bounds). Values in [1, 10) give finite y.
    """
    table = np.arange(10, dtype=np.float32)
    nodes = [
        helper.make_node("Log", ["x"], ["log"]),
        helper.make_node("Cast", ["x"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["looked_up"], axis=0),
        helper.make_node("Add", ["log", "looked_up"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(table, "table")],
    )
    return save_model(graph, path)


def write_slow_model(path, layers: int) -> str:
    """Write a chain of `layers` (MatMul, Tanh) pairs of width SLOW_WIDTH, many operators long.

    onnxruntime checks RunOptions.terminate between operators, so a long chain of short
    operators can be stopped within milliseconds.
    """
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((SLOW_WIDTH, SLOW_WIDTH)) / np.sqrt(SLOW_WIDTH)).astype(np.float32)
    nodes = []
    previous = "x"
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "weight"], [f"linear{layer}"]))
        nodes.append(helper.make_node("Tanh", [f"linear{layer}"], [f"hidden{layer}"]))
        previous = f"hidden{layer}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SLOW_WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", SLOW_WIDTH])],
        [numpy_helper.from_array(weight, "weight")],
    )
    return save_model(graph, path)


def direct_outputs(path, queries: np.ndarray, workers=None) -> dict[int, np.ndarray]:
    """Run queries[:, i] of each worker i through a plain onnxruntime session: the reference."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    workers = range(queries.shape[1]) if workers is None else workers
    return {i: session.run(None, {input_name: queries[:, i].astype(np.float32)})[0] for i in workers}


def assert_outputs_match(result: GatherResult, expected: dict[int, np.ndarray], workers) -> None:
    assert sorted(result.outputs) == sorted(workers)
    for worker in workers:
        (output,) = result.outputs[worker]
        assert output.dtype == np.float64
        np.testing.assert_allclose(output, expected[worker], rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def linear_path(tmp_path_factory):
    return write_linear_classifier(tmp_path_factory.mktemp("models") / "linear.onnx", num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def linear_model(linear_path):
    return OnnxModel(linear_path)


@pytest.fixture
def queries():
    return np.random.default_rng(5).normal(size=(GROUPS, NUM_WORKERS, *QUERY_SHAPE))


def test_gather_all_workers_match_direct_run(linear_model, linear_path, queries):
    with LocalBackend(linear_model, NUM_WORKERS, intra_op_threads=1) as backend:
        result = backend.gather(queries, ["logits"], needed=NUM_WORKERS, timeout=30.0)

    assert_outputs_match(result, direct_outputs(linear_path, queries), range(NUM_WORKERS))
    assert result.late == ()
    assert result.failed == {}
    assert sorted(result.elapsed) == list(range(NUM_WORKERS))
    assert all(0 <= seconds <= result.wall_time for seconds in result.elapsed.values())


def test_gather_accepts_model_dtype_queries(linear_model, linear_path, queries):
    with LocalBackend(linear_model, NUM_WORKERS, intra_op_threads=1) as backend:
        result = backend.gather(queries.astype(np.float32), needed=NUM_WORKERS, timeout=30.0)
    assert_outputs_match(result, direct_outputs(linear_path, queries), range(NUM_WORKERS))


def test_gather_returns_without_delayed_worker(linear_model, linear_path, queries):
    plan = FaultPlan(delays={3: 60.0})
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=3, timeout=30.0)

    assert result.wall_time < MARGIN
    assert result.late == (3,)
    assert result.failed == {}
    assert 3 not in result.elapsed
    assert_outputs_match(result, direct_outputs(linear_path, queries), [0, 1, 2])


def test_collect_for_waits_for_delayed_worker(linear_model, linear_path, queries):
    plan = FaultPlan(delays={3: 0.3})
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=3, timeout=30.0, collect_for=20.0)

    assert_outputs_match(result, direct_outputs(linear_path, queries), range(NUM_WORKERS))
    assert result.elapsed[3] >= 0.3
    assert result.wall_time < 0.3 + MARGIN


def test_collect_for_stops_at_window(linear_model, queries):
    plan = FaultPlan(delays={3: 60.0})
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=3, timeout=30.0, collect_for=0.3)

    assert result.wall_time >= 0.3
    assert result.wall_time < 0.3 + MARGIN
    assert result.late == (3,)
    assert sorted(result.outputs) == [0, 1, 2]


def test_collect_for_never_returns_below_needed(linear_model, queries):
    # Two workers are late by 0.4 s; the 0.1 s window passes first, but the call needs 4 results.
    plan = FaultPlan(delays={0: 0.4, 1: 0.4})
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=4, timeout=30.0, collect_for=0.1)

    assert sorted(result.outputs) == [0, 1, 2, 3]
    assert result.wall_time >= 0.4


def test_injected_failure_is_reported(linear_model, linear_path, queries, caplog):
    plan = FaultPlan(fail=(1,), nonfinite=(2,))
    caplog.set_level(logging.INFO, logger="approxifer_onnx.backends.local")
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=2, timeout=30.0, collect_for=20.0)

    assert result.failed == {
        1: "InjectedFaultError: injected failure",
        2: "output 0 contains non-finite values",
    }
    assert result.late == ()
    assert_outputs_match(result, direct_outputs(linear_path, queries), [0, 3])
    assert "worker 1 failed: InjectedFaultError: injected failure" in caplog.text
    assert "worker 2 failed: output 0 contains non-finite values" in caplog.text


def test_hanging_worker_is_late(linear_model, linear_path, queries):
    plan = FaultPlan(hang=(0,))
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=3, timeout=30.0, collect_for=0.2)
        assert backend.drain(timeout=MARGIN)

    assert result.late == (0,)
    assert result.wall_time < 0.2 + MARGIN
    assert_outputs_match(result, direct_outputs(linear_path, queries), [1, 2, 3])


def test_not_enough_results_after_timeout(linear_model, queries):
    plan = FaultPlan(hang=(0, 1))
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        start = time.monotonic()
        with pytest.raises(
            NotEnoughResultsError,
            match=r"received 2 of 4 worker results, decoding needs 3: workers 0, 1 had not answered; "
            r".*raise the timeout \(now 0.5 s\)",
        ) as caught:
            backend.gather(queries, needed=3, timeout=0.5)
        waited = time.monotonic() - start

    assert caught.value.received == 2
    assert caught.value.needed == 3
    assert waited >= 0.5
    assert waited < 0.5 + MARGIN


def test_not_enough_results_raises_early(linear_model, queries):
    # Once two workers failed, 3 of 4 results can no longer arrive, so the call raises without
    # waiting for the 60 s deadline. The other two may or may not have replied by then.
    plan = FaultPlan(fail=(0, 1))
    with LocalBackend(linear_model, NUM_WORKERS, faults=plan, intra_op_threads=1) as backend:
        start = time.monotonic()
        with pytest.raises(NotEnoughResultsError, match=r"received [0-2] of 4 worker results, decoding needs 3: workers 0, 1 failed"):
            backend.gather(queries, needed=3, timeout=60.0)
        assert time.monotonic() - start < MARGIN


def test_real_model_faults_are_stragglers(tmp_path, caplog):
    path = write_fragile_model(tmp_path / "fragile.onnx")
    model = OnnxModel(path)
    queries = np.random.default_rng(2).uniform(1.0, 9.0, size=(GROUPS, NUM_WORKERS, 4))
    queries[0, 1, 0] = -2.0  # log of a negative number: NaN
    queries[1, 2, 3] = 50.0  # table lookup out of bounds: onnxruntime raises
    caplog.set_level(logging.WARNING, logger="approxifer_onnx.backends.local")

    with LocalBackend(model, NUM_WORKERS, intra_op_threads=1) as backend:
        result = backend.gather(queries, needed=2, timeout=30.0, collect_for=20.0)

    assert sorted(result.failed) == [1, 2]
    assert result.failed[1] == "output 0 contains non-finite values"
    assert "indices element out of data bounds" in result.failed[2]
    assert_outputs_match(result, direct_outputs(path, queries, [0, 3]), [0, 3])
    assert "worker 1 failed: output 0 contains non-finite values" in caplog.text
    assert "worker 2 failed:" in caplog.text


def test_terminate_stops_long_run(tmp_path):
    # Deepen the chain until one run takes at least 1 s, so that stopping it early is visible.
    layers = 50
    inputs = np.random.default_rng(3).standard_normal((SLOW_BATCH, SLOW_WIDTH)).astype(np.float32)
    while True:
        path = write_slow_model(tmp_path / f"slow{layers}.onnx", layers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        start = time.monotonic()
        session.run(None, {"x": inputs})
        full_run = time.monotonic() - start
        if full_run >= 1.0:
            break
        layers = int(layers * min(8.0, 1.5 / full_run))

    model = OnnxModel(path)
    queries = np.repeat(inputs[:, None], 2, axis=1)  # (G, N=2, width)
    with LocalBackend(model, 2, intra_op_threads=1) as backend:
        start = time.monotonic()
        with pytest.raises(NotEnoughResultsError, match=r"received 0 of 2 worker results.*raise the timeout \(now 0.1 s\)"):
            backend.gather(queries, needed=2, timeout=0.1)
        assert backend.drain(timeout=full_run + MARGIN)
        stopped_after = time.monotonic() - start

    # Both runs would take full_run seconds each on a shared machine; terminated, they end soon
    # after the 0.1 s deadline.
    assert stopped_after < 0.5 * full_run, (stopped_after, full_run)


def test_worker_reused_after_hang(linear_model, linear_path, queries):
    with LocalBackend(linear_model, NUM_WORKERS, faults=FaultPlan(hang=(1,)), intra_op_threads=1) as backend:
        first = backend.gather(queries, needed=3, timeout=30.0)
        assert first.late == (1,)

        backend.faults = None
        later_queries = queries + 1.0
        second = backend.gather(later_queries, needed=NUM_WORKERS, timeout=30.0)

    # Worker 1's output belongs to the second call's queries, not to the cancelled first call.
    assert_outputs_match(second, direct_outputs(linear_path, later_queries), range(NUM_WORKERS))
    assert second.late == ()


def test_late_delay_does_not_leak_into_next_call(linear_model, linear_path, queries):
    with LocalBackend(linear_model, NUM_WORKERS, faults=FaultPlan(delays={2: 0.3}), intra_op_threads=1) as backend:
        first = backend.gather(queries, needed=3, timeout=30.0)
        assert first.late == (2,)

        later_queries = queries * 2.0
        second = backend.gather(later_queries, needed=NUM_WORKERS, timeout=30.0, collect_for=20.0)

    assert_outputs_match(second, direct_outputs(linear_path, later_queries), range(NUM_WORKERS))


def test_random_count_plan_makes_one_late_per_call(linear_model, queries):
    plan = FaultPlan(count=1, random_delay=DelayDistribution.hang())
    late_by_seed = []
    for _ in range(2):
        with LocalBackend(linear_model, NUM_WORKERS, faults=plan, rng=42, intra_op_threads=1) as backend:
            late = [backend.gather(queries, needed=3, timeout=30.0).late for _ in range(5)]
        assert all(len(workers) == 1 for workers in late)
        late_by_seed.append(late)
    assert late_by_seed[0] == late_by_seed[1]


def test_close_joins_all_threads(linear_model, queries):
    before = set(threading.enumerate())
    backend = LocalBackend(linear_model, NUM_WORKERS, faults=FaultPlan(hang=(0,)), intra_op_threads=1)
    started = set(threading.enumerate()) - before
    assert len(started) == NUM_WORKERS
    backend.gather(queries, needed=3, timeout=30.0)

    backend.close()
    assert not any(thread.is_alive() for thread in started)
    backend.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="LocalBackend is closed; create a new backend"):
        backend.gather(queries, needed=3, timeout=30.0)


def test_default_intra_op_threads_share_cpus(linear_path):
    requested = []

    class RecordingModel(OnnxModel):
        def new_session(self, intra_op_threads=1, inter_op_threads=1):
            requested.append(intra_op_threads)
            return super().new_session(intra_op_threads, inter_op_threads)

    model = RecordingModel(linear_path)
    with LocalBackend(model, 2):
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert requested == [max(1, cpus // 2)] * 2


def test_backend_satisfies_protocol(linear_model):
    with LocalBackend(linear_model, 2, intra_op_threads=1) as backend:
        assert isinstance(backend, Backend)
        assert backend.num_workers == 2


def test_gather_result_stack_and_mask():
    result = GatherResult(outputs={0: [np.full((2, 3), 1.0)], 2: [np.full((2, 3), 3.0)]}, late=(1,))
    stacked = result.stack(num_workers=3)
    assert stacked.shape == (2, 3, 3)
    assert np.all(stacked[:, 0] == 1.0)
    assert np.all(stacked[:, 1] == 0.0)
    assert np.all(stacked[:, 2] == 3.0)
    assert result.available_mask(3).tolist() == [True, False, True]
    assert result.received == (0, 2)


def test_constructor_rejects_invalid_arguments(linear_model):
    with pytest.raises(ValueError, match="num_workers must be >= 1, got num_workers=0"):
        LocalBackend(linear_model, 0)
    with pytest.raises(TypeError, match="num_workers must be an int, got 2.0"):
        LocalBackend(linear_model, 2.0)
    with pytest.raises(ValueError, match=r"names worker 4, but num_workers=4; workers are numbered 0..3"):
        LocalBackend(linear_model, NUM_WORKERS, faults=FaultPlan(fail=(4,)))
    with pytest.raises(TypeError, match="faults must be a FaultPlan or None, got str; use FaultPlan.parse"):
        LocalBackend(linear_model, NUM_WORKERS, faults="fail=1")
    with pytest.raises(ValueError, match="intra_op_threads must be an int >= 1 or None, got 0"):
        LocalBackend(linear_model, NUM_WORKERS, intra_op_threads=0)


def test_gather_rejects_invalid_arguments(linear_model, queries):
    with LocalBackend(linear_model, NUM_WORKERS, intra_op_threads=1) as backend:
        with pytest.raises(ValueError, match=r"needed must satisfy 1 <= needed <= num_workers=4, got 5"):
            backend.gather(queries, needed=5, timeout=1.0)
        with pytest.raises(ValueError, match=r"N = num_workers = 4, got shape \(3, 3, 1, 4, 4\)"):
            backend.gather(queries[:, :3], needed=3, timeout=1.0)
        with pytest.raises(ValueError, match=r"the model's query_shape \(1, 4, 4\), got shape \(3, 4, 16\)"):
            backend.gather(queries.reshape(GROUPS, NUM_WORKERS, 16), needed=3, timeout=1.0)
        with pytest.raises(TypeError, match="queries must be a floating-point array, got dtype int64"):
            backend.gather(queries.astype(np.int64), needed=3, timeout=1.0)
        with pytest.raises(ValueError, match="timeout must be finite and > 0 seconds, got timeout=0.0"):
            backend.gather(queries, needed=3, timeout=0)
        with pytest.raises(ValueError, match="collect_for must be finite and >= 0 seconds, got collect_for=-1.0"):
            backend.gather(queries, needed=3, timeout=1.0, collect_for=-1)
        with pytest.raises(TypeError, match=r"output_names must be a sequence of names or None, got 'logits'"):
            backend.gather(queries, "logits", needed=3, timeout=1.0)
