"""CodedInferenceSession end to end on real onnxruntime workers."""

import time

import numpy as np
import pytest

from approxifer_onnx.exceptions import NotEnoughResultsError
from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.session import CodedInferenceSession, softmax

from .fixtures import QUERY_SHAPE, write_linear_classifier, write_mlp_classifier


def queries(count, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *QUERY_SHAPE)).astype(np.float32)


@pytest.fixture()
def linear_path(tmp_path):
    return write_linear_classifier(tmp_path / "linear.onnx")


@pytest.fixture()
def mlp_path(tmp_path):
    return write_mlp_classifier(tmp_path / "mlp.onnx", hidden=16)


def run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("count", [0, 1, 3, 4, 14])
def test_any_batch_size_in_input_order(linear_path, count):
    # N = 2K with cos(i pi/N) nodes: every query node is a worker node, so decoding is exact and
    # the coded outputs must equal the uncoded ones row for row.
    with CodedInferenceSession(
        linear_path, k=4, stragglers=0, num_workers=8, nodes="second-kind-open", wait="deadline"
    ) as session:
        x = queries(count)
        coded = run(session, x)
        assert coded.shape == (count, 10)
        if count:
            np.testing.assert_allclose(coded, session.predict_uncoded(x), rtol=1e-5, atol=1e-5)
            assert session.last_run.num_inputs == count
            assert len(session.last_run.groups) == -(-count // 4)
            assert all(not group.approximate for group in session.last_run.groups)


def test_exact_flags_cover_only_real_queries(linear_path):
    with CodedInferenceSession(linear_path, k=4, stragglers=0, num_workers=8,
                               nodes="second-kind-open", wait="deadline") as session:
        run(session, queries(6))
        assert [len(group.exact) for group in session.last_run.groups] == [4, 2]


def test_linear_model_decodes_close_to_uncoded(linear_path):
    with CodedInferenceSession(linear_path, k=8, stragglers=1, wait="deadline",
                               nodes="second-kind-open") as session:
        x = queries(64, seed=1)
        coded = run(session, x)
        uncoded = session.predict_uncoded(x)
        report = session.last_run
    assert len(report.groups[0].answered) == 9
    assert report.groups[0].approximate
    # Decoding interpolates an interpolant, so even an affine model is only approximated.
    error = np.abs(coded - uncoded).max() / np.abs(uncoded).max()
    assert error < 0.5
    assert np.mean(coded.argmax(1) == uncoded.argmax(1)) > 0.6


def test_deadline_beats_first_k_agreement(mlp_path):
    x = queries(400, seed=2)
    agreements = {}
    for wait in ("first-k", "deadline"):
        with CodedInferenceSession(mlp_path, k=8, stragglers=3, wait=wait, rng=0,
                                   faults=FaultPlan.parse("count=3;delay=0.05")) as session:
            uncoded = session.predict_uncoded(x).argmax(1)
            coded = np.concatenate([run(session, x[i : i + 64]) for i in range(0, 400, 64)])
            agreements[wait] = np.mean(coded.argmax(1) == uncoded)
    assert agreements["deadline"] > agreements["first-k"]


def test_hung_worker_is_dropped_before_timeout(linear_path):
    plan = FaultPlan.parse("hang=2")
    with CodedInferenceSession(linear_path, k=4, stragglers=1, timeout=5.0,
                               faults=plan) as session:
        started = time.monotonic()
        run(session, queries(8))
        elapsed = time.monotonic() - started
        group = session.last_run.groups[0]
    assert elapsed < 4.0
    assert 2 not in group.answered
    assert len(group.answered) == 4


def test_too_many_failures_raise(linear_path):
    plan = FaultPlan.parse("fail=0,1")
    with CodedInferenceSession(linear_path, k=4, stragglers=1, timeout=2.0,
                               faults=plan) as session:
        with pytest.raises(NotEnoughResultsError, match=r"received [0-3] of 5 worker results.*decoding needs 4"):
            run(session, queries(4))


def test_deadline_waits_for_late_worker_within_deadline(linear_path):
    plan = FaultPlan.parse("workers=1;delay=0.2")
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline", deadline=2.0,
                               faults=plan) as session:
        run(session, queries(4))
        assert session.last_run.groups[0].answered == (0, 1, 2, 3, 4)


def test_deadline_gives_up_on_slow_worker(linear_path):
    plan = FaultPlan.parse("workers=1;delay=hang")
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline", deadline=0.3,
                               timeout=5.0, faults=plan) as session:
        started = time.monotonic()
        run(session, queries(4))
        elapsed = time.monotonic() - started
        group = session.last_run.groups[0]
    assert group.answered == (0, 2, 3, 4)
    assert 1 in group.late or 1 in group.failed
    assert elapsed < 3.0


def test_probabilities_decode_sums_to_one(mlp_path):
    with CodedInferenceSession(mlp_path, k=4, stragglers=1, decode="probabilities",
                               wait="deadline") as session:
        probabilities = run(session, queries(8))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)


def test_float16_model_runs(tmp_path):
    path = write_linear_classifier(tmp_path / "half.onnx", dtype=np.float16)
    with CodedInferenceSession(path, k=4, stragglers=0, num_workers=8,
                               nodes="second-kind-open", wait="deadline") as session:
        x = queries(8).astype(np.float16)
        coded = run(session, x)
        assert coded.dtype == np.float64
        np.testing.assert_allclose(coded, session.predict_uncoded(x), rtol=1e-2, atol=1e-2)


def test_fixed_batch_model_runs_query_by_query(tmp_path):
    path = write_linear_classifier(tmp_path / "fixed.onnx", batch_size=1)
    with CodedInferenceSession(path, k=4, stragglers=0, num_workers=8,
                               nodes="second-kind-open", wait="deadline") as session:
        x = queries(5)
        np.testing.assert_allclose(run(session, x), session.predict_uncoded(x), rtol=1e-5,
                                   atol=1e-5)


def test_get_inputs_and_outputs(tmp_path):
    path = write_linear_classifier(tmp_path / "labels.onnx", label_output=True)
    with CodedInferenceSession(path, k=2, stragglers=1) as session:
        assert [info.name for info in session.get_inputs()] == ["x"]
        assert [info.name for info in session.get_outputs()] == ["logits"]
        assert session.get_providers() == ["CPUExecutionProvider"]
        with pytest.raises(ValueError, match="output 'label' is not a floating-point output"):
            session.run(["label"], {"x": queries(2)})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"wait": "all"}, "wait='all' is not a wait policy; choose 'first-k' or 'deadline'"),
    ({"decode": "softmax"}, "decode='softmax' is not supported"),
    ({"timeout": 0}, "timeout must be a positive, finite number of seconds, got timeout=0"),
    ({"deadline": 0.5}, "deadline=0.5 applies only to wait='deadline', got wait='first-k'"),
    ({"k": 8, "stragglers": 2, "num_workers": 9}, r"needs at least K\+S = 10 workers"),
])
def test_invalid_session_settings(linear_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodedInferenceSession(linear_path, **kwargs)


@pytest.mark.parametrize(("feed", "error", "message"), [
    ({"y": np.zeros((2, *QUERY_SHAPE))}, ValueError, r"input_feed must have exactly the key 'x', got \['y'\]"),
    ({"x": np.zeros((2, 3))}, ValueError, r"input 'x' must have shape \(batch, 1, 4, 4\), got \(2, 3\)"),
    ({"x": np.full((2, *QUERY_SHAPE), np.nan)}, ValueError, "contains NaN or infinite values"),
    ({"x": np.zeros((2, *QUERY_SHAPE), dtype=bool)}, TypeError, "must be a real-valued array, got dtype bool"),
])
def test_invalid_input_feed(linear_path, feed, error, message):
    with CodedInferenceSession(linear_path, k=2, stragglers=1) as session:
        with pytest.raises(error, match=message):
            session.run(None, feed)


def test_output_names_string_is_rejected(linear_path):
    with CodedInferenceSession(linear_path, k=2, stragglers=1) as session:
        with pytest.raises(TypeError, match=r"pass \['logits'\]"):
            session.run("logits", {"x": queries(2)})


def test_softmax_is_stable():
    values = softmax(np.array([[1000.0, 1000.0], [0.0, -1000.0]]))
    np.testing.assert_allclose(values, [[0.5, 0.5], [1.0, 0.0]])


def test_byzantine_sets_worker_count_from_locator(linear_path):
    with CodedInferenceSession(linear_path, k=4, stragglers=1, byzantine=1,
                               locator="reed-solomon") as session:
        assert session.num_workers == 4 + 2 + 1
        assert session.results_needed == 6
    with CodedInferenceSession(linear_path, k=4, stragglers=0, byzantine=1,
                               locator="welch") as session:
        assert session.num_workers == 2 * 4 + 2 * 1 - 1


def test_byzantine_first_k_waits_for_all_but_s(linear_path):
    # Workers beyond the locator's minimum give the locator more results to check, so with
    # E > 0 the first-k policy waits for N - S results, not the minimum.
    with CodedInferenceSession(linear_path, k=4, stragglers=1, byzantine=1,
                               num_workers=10) as session:
        assert session.results_needed == 9
        run(session, queries(8, seed=6))
        assert all(len(group.answered) >= 9 for group in session.last_run.groups)
    with CodedInferenceSession(linear_path, k=4, stragglers=1, num_workers=10) as session:
        assert session.results_needed == 4


def test_calibrate_locator_sets_tolerance(mlp_path):
    with CodedInferenceSession(mlp_path, k=4, stragglers=0, byzantine=1, num_workers=8,
                               attack="gaussian:100@random:1", rng=0) as session:
        tolerance = session.calibrate_locator(queries(64, seed=7), rng=0)
        run(session, queries(32, seed=8))
        report = session.last_run
    assert tolerance == session.locator_tolerance
    assert 0 < tolerance < 6.0  # tighter than the default for these outputs
    assert all(len(group.suspected) == 1 for group in report.groups)


def test_calibrate_locator_rejects_bad_input(mlp_path):
    with CodedInferenceSession(mlp_path, k=4, stragglers=0) as session:
        with pytest.raises(ValueError, match="needs a session with byzantine > 0"):
            session.calibrate_locator(queries(8))
    with CodedInferenceSession(mlp_path, k=4, stragglers=0, byzantine=1) as session:
        with pytest.raises(ValueError, match="needs at least K=4 inputs, got 3"):
            session.calibrate_locator(queries(3))


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"attack": 3}, TypeError, "attack must be a ByzantinePlan or its text form"),
    ({"attack": "noise@1"}, ValueError, "unknown attack 'noise'"),
    ({"locator_tolerance": "3"}, TypeError, "locator_tolerance must be a number, got str"),
    ({"locator_tolerance": -1.0}, ValueError, "locator_tolerance must be >= 0, got -1.0"),
])
def test_byzantine_arguments_checked_early(linear_path, arguments, error, message):
    with pytest.raises(error, match=message):
        CodedInferenceSession(linear_path, k=4, byzantine=1, **arguments)


def test_byzantine_worker_count_is_validated(linear_path):
    with pytest.raises(ValueError, match="byzantine=2 needs at least"):
        CodedInferenceSession(linear_path, k=4, stragglers=0, byzantine=2, num_workers=5)


def test_unknown_locator_lists_choices(linear_path):
    with pytest.raises(ValueError, match="locator='vote' is unknown; choose one of 'welch'"):
        CodedInferenceSession(linear_path, k=4, byzantine=1, locator="vote")


def test_wrong_worker_is_suspected_and_dropped(tmp_path):
    from approxifer_onnx.attacks import ByzantinePlan

    # An affine model makes each worker output y(z) with y(z) * D(z) exactly a polynomial of
    # degree K - 1 in the worker node z, so the locator must find the wrong worker every time.
    path = write_linear_classifier(tmp_path / "linear.onnx", num_classes=3)
    with CodedInferenceSession(path, k=4, stragglers=0, byzantine=1, locator="reed-solomon",
                               wait="deadline", attack=ByzantinePlan.parse("gaussian:100@2"),
                               locator_tolerance=1e-3, rng=0) as session:
        x = queries(8, seed=4)
        coded = run(session, x)
        report = session.last_run
    for group in report.groups:
        assert group.suspected == (2,)
        assert 2 not in group.answered
    # Dropping the suspect gives the same outputs as if worker 2 had failed outright.
    with CodedInferenceSession(path, k=4, stragglers=2, num_workers=6, wait="deadline",
                               faults=FaultPlan.parse("fail=2")) as reference:
        expected = run(reference, x)
    np.testing.assert_allclose(coded, expected, rtol=1e-9, atol=1e-9)


def test_privacy_on_outputs_adds_noise_and_charges_budget(linear_path):
    from approxifer_onnx.privacy import LaplaceMechanism

    mechanism = LaplaceMechanism(epsilon=0.5, lower=-20.0, upper=20.0, rng=1)
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline",
                               privacy=mechanism, privacy_placement="outputs") as session:
        assert session.privacy_spent == 0.0
        noisy = run(session, queries(4))
        # One group, five workers, one output: five released vectors at epsilon 0.5 each.
        assert session.privacy_spent == pytest.approx(2.5)
    with CodedInferenceSession(linear_path, k=4, stragglers=1, wait="deadline") as session:
        clean = run(session, queries(4))
    assert np.abs(noisy - clean).max() > 1.0


def test_privacy_on_queries_needs_bounds(linear_path):
    from approxifer_onnx.privacy import LaplaceMechanism

    with pytest.raises(ValueError, match="needs lower and upper"):
        CodedInferenceSession(linear_path, k=4, privacy=LaplaceMechanism(epsilon=1.0, sensitivity=1.0),
                              privacy_placement="queries")


def test_default_nodes_are_exact_without_stragglers(mlp_path):
    with CodedInferenceSession(mlp_path, k=8, stragglers=1, wait="deadline") as session:
        x = queries(16, seed=5)
        coded = run(session, x)
        assert session.code.node_family == "paired"
        assert not any(group.approximate for group in session.last_run.groups)
        np.testing.assert_allclose(coded, session.predict_uncoded(x), rtol=1e-5, atol=1e-5)
