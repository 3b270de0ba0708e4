"""The accuracy protocol, decoders, node fitting and report intervals on tiny real models."""

import math

import numpy as np
import pytest

from approxifer_onnx.calibration import fit_node_shift
from approxifer_onnx.coding import BerrutCode, worker_nodes
from approxifer_onnx.coding.decoders import decode_with, parse_decoder
from approxifer_onnx.coding.floater_hormann import floater_hormann_matrix
from approxifer_onnx.coding.placements import make_code, shifted_worker_nodes
from approxifer_onnx.evaluation import (
    GridSetting,
    compute_coded_outputs,
    draw_available,
    evaluate_grid,
    evaluate_protocol,
    parse_grid,
    parse_wait,
)
from approxifer_onnx.exceptions import DecodingError
from approxifer_onnx.model import OnnxModel
from approxifer_onnx.report import group_bootstrap_interval, published_accuracy, wilson_interval

from .fixtures import QUERY_SHAPE, write_mlp_classifier

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_mlp_classifier(
        tmp_path_factory.mktemp("models") / "mlp.onnx", hidden=16, num_classes=NUM_CLASSES
    )
    return OnnxModel(path)


@pytest.fixture(scope="module")
def data(model):
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(90, *QUERY_SHAPE)).astype(np.float32)
    labels = model.predict(inputs)[0].argmax(axis=1)
    labels[:9] = (labels[:9] + 1) % NUM_CLASSES  # nine wrong labels: base accuracy 81/90
    return inputs, labels


class CountingModel:
    """An OnnxModel wrapper that counts the queries each `predict` call runs."""

    def __init__(self, model):
        self.model = model
        self.outputs = model.outputs
        self.queries_run = 0

    def predict(self, x, output_names=None):
        self.queries_run += len(x)
        return self.model.predict(x, output_names)


def test_byzantine_first_k_uses_all_but_s(model, data):
    inputs, labels = data

    located = evaluate_protocol(model, inputs, labels, k=4, stragglers=1, num_workers=10,
                                byzantine=1, rng=5)
    plain = evaluate_protocol(model, inputs, labels, k=4, stragglers=1, num_workers=10, rng=5)

    # No result is wrong, so the locator keeps the N - S = 9 results or drops one honest one.
    assert 8.5 <= located.mean_results_used <= 9.0
    assert plain.mean_results_used == 4.0


def test_protocol_matches_direct_computation(model, data):
    inputs, labels = data
    code = BerrutCode(4, 1)

    result = evaluate_protocol(model, inputs, labels, k=4, stragglers=1, passes=2, rng=5)

    # The same random stream, consumed in the same order, decoded by hand.
    rng = np.random.default_rng(5)
    base = model.predict(inputs)[0].argmax(axis=1)
    correct = agree = scored = 0
    for _ in range(2):
        coded = compute_coded_outputs(model, inputs, code, rng=rng)
        available = draw_available(code, len(coded.order), wait="first-k", rng=rng)
        predictions = code.decode(coded.outputs, available).argmax(axis=-1)
        real = coded.order >= 0
        correct += np.sum(predictions[real] == labels[coded.order[real]])
        agree += np.sum(predictions[real] == base[coded.order[real]])
        scored += real.sum()
    assert result.accuracy_coded == correct / scored
    assert result.agreement == agree / scored
    assert result.accuracy_centralized == 81 / 90
    assert result.decoder == "berrut"


def test_protocol_reports_intervals_around_accuracy(model, data):
    inputs, labels = data

    result = evaluate_protocol(model, inputs, labels, k=4, stragglers=1, passes=2, rng=0)

    assert result.accuracy_coded_low <= result.accuracy_coded <= result.accuracy_coded_high
    assert result.accuracy_coded_high - result.accuracy_coded_low > 0.01
    expected = wilson_interval(81, 90)
    assert result.accuracy_centralized_low == expected[0]
    assert result.accuracy_centralized_high == expected[1]
    assert result.to_dict()["confidence"] == 0.95


def test_protocol_order_zero_equals_berrut(model, data):
    inputs, labels = data
    common = dict(k=4, stragglers=2, num_workers=8, passes=1, rng=3)

    berrut = evaluate_protocol(model, inputs, labels, decoder="berrut", **common)
    order_zero = evaluate_protocol(model, inputs, labels, decoder="floater-hormann:0", **common)

    assert order_zero.accuracy_coded == berrut.accuracy_coded
    assert order_zero.decoder == "floater-hormann:0"


def test_protocol_rejects_mismatched_coded_outputs(model, data):
    inputs, labels = data
    coded = compute_coded_outputs(model, inputs, BerrutCode(4, 1, nodes="first-kind"),
                                  rng=np.random.default_rng(0))

    with pytest.raises(ValueError, match=r"coded_outputs were computed with BerrutCode\(k=4"):
        evaluate_protocol(model, inputs, labels, k=4, stragglers=1, nodes="second-kind",
                          coded_outputs=[coded])


def test_protocol_rejects_unknown_decode_space(model, data):
    inputs, labels = data
    with pytest.raises(ValueError, match=r"decode='softmax' is not supported"):
        evaluate_protocol(model, inputs, labels, k=4, stragglers=1, decode="softmax")


def test_grid_runs_model_once_per_code_and_pass(model, data):
    inputs, labels = data
    counting = CountingModel(model)
    settings = [GridSetting(4, 1), GridSetting(3, 1, 6)]

    results = evaluate_grid(
        counting, inputs, labels, settings, nodes=["second-kind", "first-kind"],
        waits=["first-k", "deadline:0.2"], decodes=["logits", "probabilities"],
        decoders=["berrut", "floater-hormann:1"], passes=2, rng=0,
    )

    # Base run, then per node family and pass: ceil(90/4) = 23 groups of 5, 30 groups of 6.
    expected_queries = 90 + 2 * 2 * (23 * 5 + 30 * 6)
    assert counting.queries_run == expected_queries
    assert len(results) == 2 * 2 * 2 * 2 * 2
    first = results[0]
    assert (first.k, first.num_workers, first.nodes, first.wait) == (4, 5, "second-kind",
                                                                      "first-k")
    assert (first.decode, first.decoder) == ("logits", "berrut")
    assert {result.num_workers for result in results[16:]} == {6}


def test_grid_shares_straggler_draws_between_decoders(model, data):
    inputs, labels = data

    results = evaluate_grid(
        model, inputs, labels, [GridSetting(4, 2)], waits=["first-k", "deadline:0.3"],
        decoders=["berrut", "floater-hormann:0"], passes=1, rng=7,
    )

    assert len(results) == 4
    assert results[0].accuracy_coded == results[1].accuracy_coded
    assert results[2].accuracy_coded == results[3].accuracy_coded
    assert results[2].mean_results_used > results[0].mean_results_used


def test_grid_is_reproducible_with_seed(model, data):
    inputs, labels = data
    settings = [GridSetting(4, 1)]

    first = evaluate_grid(model, inputs, labels, settings, passes=1, rng=11)
    second = evaluate_grid(model, inputs, labels, settings, passes=1, rng=11)

    for key in ("accuracy_coded", "agreement", "mean_results_used", "accuracy_coded_low",
                "accuracy_coded_high"):
        assert getattr(first[0], key) == getattr(second[0], key), key


def test_grid_fit_needs_calibration_inputs(model, data):
    inputs, labels = data
    with pytest.raises(ValueError, match=r"nodes='fit' needs calibration_inputs"):
        evaluate_grid(model, inputs, labels, [GridSetting(4, 1)], nodes=["fit"])


def test_grid_fit_labels_rows_with_fitted_shift(model, data):
    inputs, labels = data

    results = evaluate_grid(model, inputs, labels, [GridSetting(4, 0, 4)], nodes=["fit"],
                            calibration_inputs=inputs[:40], rng=0)

    # N = K with shift 1/2 puts every worker on a query node, so decoding is exact.
    assert results[0].nodes == "fitted shift:0.5"
    assert results[0].agreement == 1.0


def test_fit_picks_exact_shift_for_square_code(model, data):
    inputs, _ = data

    fit = fit_node_shift(model, inputs[:40], k=4, stragglers=0, shifts=[0.0, 0.25, 0.5], rng=0)

    assert fit.shift == 0.5
    assert fit.agreement[0.5] == 1.0
    assert fit.agreement[0.0] < 1.0
    assert fit.nodes == "shift:0.5"
    assert fit.num_inputs == 40


def test_fit_rejects_too_few_inputs(model, data):
    inputs, _ = data
    with pytest.raises(ValueError, match=r"needs at least K=8 inputs, got 5"):
        fit_node_shift(model, inputs[:5], k=8, stragglers=1)


def test_decode_with_floater_hormann_matches_matrix():
    rng = np.random.default_rng(0)
    code = BerrutCode(4, 2)
    y = rng.normal(size=(3, 6, 5))
    available = np.array([[1, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0]], bool)

    estimates = decode_with(code, y, available, "floater-hormann:2")

    for group in range(3):
        workers = np.flatnonzero(available[group])
        matrix = floater_hormann_matrix(code.alpha, code.beta[workers], 2)
        np.testing.assert_allclose(estimates[group], matrix @ y[group, workers], atol=1e-12)


def test_decode_with_rejects_empty_group():
    code = BerrutCode(2, 1)
    with pytest.raises(DecodingError, match=r"group 0 has no worker result"):
        decode_with(code, np.zeros((1, 3, 2)), np.zeros((1, 3), bool), "floater-hormann:1")


@pytest.mark.parametrize("name, order", [("berrut", 0), ("floater-hormann:0", 0),
                                         ("floater-hormann:3", 3)])
def test_parse_decoder_orders(name, order):
    assert parse_decoder(name) == order


@pytest.mark.parametrize("name", ["floater-hormann", "floater-hormann:-1", "fh:2", "Berrut"])
def test_parse_decoder_rejects_invalid(name):
    with pytest.raises(ValueError, match=r"is not a decoder; use 'berrut' or 'floater-hormann:D'"):
        parse_decoder(name)


def test_shifted_nodes_contain_named_families():
    np.testing.assert_allclose(shifted_worker_nodes(9, 0.0), worker_nodes(9, "second-kind-open"))
    np.testing.assert_allclose(shifted_worker_nodes(9, 0.5), worker_nodes(9, "first-kind"))


def test_make_code_with_shift_encodes_like_named_family():
    shifted = make_code(5, 2, nodes="shift:0.5")
    named = BerrutCode(5, 2, nodes="first-kind")

    np.testing.assert_allclose(shifted.encode_matrix, named.encode_matrix, atol=1e-15)
    assert shifted.node_family == "shift:0.5"
    assert make_code(5, 2, nodes="first-kind").node_family == "first-kind"


@pytest.mark.parametrize("nodes", ["shift:1.5", "shift:x", "chebyshev"])
def test_make_code_rejects_invalid_nodes(nodes):
    with pytest.raises(ValueError, match=r"is not a node specification; use one of"):
        make_code(4, 1, nodes=nodes)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8:1,10:1", [GridSetting(8, 1), GridSetting(10, 1)]),
        (" 8:2:12 ", [GridSetting(8, 2, 12)]),
        ("4:0", [GridSetting(4, 0)]),
    ],
)
def test_parse_grid_items(text, expected):
    assert parse_grid(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("8", r"grid item '8' is invalid; write K:S or K:S:N"),
        ("8:1,x:1", r"grid item 'x:1' is invalid; write K:S or K:S:N"),
        ("8:2:9", r"grid item '8:2:9' is invalid; it needs K >= 1 and N >= K \+ S"),
        ("0:1", r"grid item '0:1' is invalid; it needs K >= 1"),
    ],
)
def test_parse_grid_rejects_invalid(text, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(text)


def test_parse_wait_policies():
    assert parse_wait("first-k") == ("first-k", 0.0)
    assert parse_wait("all-but-s") == ("all-but-s", 0.0)
    assert parse_wait("deadline:0.05") == ("deadline", 0.05)
    with pytest.raises(ValueError, match=r"wait policy 'deadline:2' is invalid"):
        parse_wait("deadline:2")
    with pytest.raises(ValueError, match=r"wait policy 'deadline' is invalid"):
        parse_wait("deadline")


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10, 0.95)

    # (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n) with p = 0.8, n = 10, z = 1.96.
    assert low == pytest.approx(0.49016, abs=1e-4)
    assert high == pytest.approx(0.94332, abs=1e-4)


def test_wilson_interval_rejects_bad_counts():
    with pytest.raises(ValueError, match=r"successes=11, trials=10"):
        wilson_interval(11, 10)


def test_bootstrap_interval_properties():
    rng = np.random.default_rng(0)
    sizes = np.full(400, 8)
    correct = rng.binomial(8, 0.7, size=400)

    low, high = group_bootstrap_interval(correct, sizes)
    narrow_low, narrow_high = group_bootstrap_interval(np.tile(correct, 4), np.tile(sizes, 4))

    accuracy = correct.sum() / sizes.sum()
    assert low < accuracy < high
    assert narrow_high - narrow_low < high - low
    assert group_bootstrap_interval(sizes, sizes) == (1.0, 1.0)
    assert group_bootstrap_interval(correct, sizes) == (low, high)


def test_published_accuracy_only_for_paper_protocol():
    assert published_accuracy("fashion-mnist", 8, 1, 9) == 0.74
    assert published_accuracy("fashion-mnist", 8, 1, 12) is None
    assert published_accuracy("fashion-mnist", 8, 1, 9, "deadline") is None
    assert published_accuracy(None, 8, 1, 9) is None
    assert math.isclose(published_accuracy("mnist", 8, 3, 11), 0.775)


def test_all_but_s_uses_every_result_but_s():
    code = BerrutCode(4, 2, num_workers=9)

    available = draw_available(code, 50, wait="all-but-s", rng=np.random.default_rng(0))
    first_k = draw_available(code, 50, wait="first-k", rng=np.random.default_rng(0))

    assert available.shape == (50, 9)
    assert set(available.sum(axis=1)) == {7}
    assert set(first_k.sum(axis=1)) == {4}
    assert len({tuple(row) for row in available}) > 10


def test_draw_available_rejects_unknown_policy():
    with pytest.raises(ValueError, match=r"wait='never' is not a wait policy; choose 'first-k'"):
        draw_available(BerrutCode(2, 1), 3, wait="never", rng=np.random.default_rng(0))


@pytest.mark.parametrize("k, n", [(8, 9), (8, 11), (4, 7), (12, 13)])
def test_systematic_nodes_contain_query_nodes(k, n):
    code = make_code(k, n - k, nodes="systematic")

    assert code.node_family == "systematic"
    assert len(code.beta) == n
    assert np.all(np.diff(code.beta) < 0)
    # Every query node is a worker node bit for bit, so K encode rows are unit vectors.
    raw = np.isin(code.beta, code.alpha)
    assert raw.sum() == k
    np.testing.assert_array_equal(code.encode_matrix[raw], np.eye(k))
    assert np.all(np.abs(code.encode_matrix[~raw]).max(axis=1) < 1)


def test_systematic_decoding_exact_when_raw_workers_answer(model, data):
    inputs, _ = data
    code = make_code(4, 2, nodes="systematic")
    x = inputs[:4][None].astype(np.float64)
    outputs = model.predict(code.encode(x)[0])[0][None]  # (1, N, C)
    raw = np.isin(code.beta, code.alpha)

    # The two parity workers straggle: the raw results are the outputs themselves.
    estimates = code.decode(outputs, raw)

    np.testing.assert_allclose(estimates[0], model.predict(inputs[:4])[0], atol=1e-5)
    assert code.exact_queries(raw).all()
