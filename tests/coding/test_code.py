"""BerrutCode: encoding, decoding from any subset, node collisions and validation."""

from fractions import Fraction

import numpy as np
import pytest

from approxifer_onnx.coding import BerrutCode
from approxifer_onnx.exceptions import DecodingError

from .test_berrut import exact_berrut

# (K, S, node family): settings from the ApproxIFER paper's tables, plus the one-query edge case.
SETTINGS = [
    (8, 1, "second-kind"),
    (8, 1, "second-kind-open"),
    (10, 1, "first-kind"),
    (12, 1, "second-kind-open"),
    (8, 3, "second-kind"),
    (1, 0, "second-kind"),
]


@pytest.mark.parametrize(("k", "s", "family"), SETTINGS)
def test_encode_matches_exact_interpolant(k, s, family):
    code = BerrutCode(k, s, nodes=family)
    rng = np.random.default_rng(k + s)
    x = rng.normal(size=(1, k))

    coded = code.encode(x)

    for i, beta in enumerate(code.beta):
        expected = exact_berrut(Fraction(beta), list(code.alpha), list(x[0]))
        assert coded[0, i] == pytest.approx(float(expected), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("k", "s", "family"), SETTINGS)
def test_decode_from_every_subset_matches_exact_interpolant(k, s, family):
    code = BerrutCode(k, s, nodes=family)
    rng = np.random.default_rng(7)
    y = rng.normal(size=(1, code.num_workers, 2))
    for dropped in range(code.num_workers):
        available = np.ones(code.num_workers, bool)
        if s:
            available[dropped] = False
        workers = np.flatnonzero(available)

        decoded = code.decode(y, available)

        for j, alpha in enumerate(code.alpha):
            for c in range(2):
                expected = exact_berrut(alpha, list(code.beta[workers]), list(y[0, workers, c]))
                assert decoded[0, j, c] == pytest.approx(float(expected), rel=1e-11, abs=1e-12)


def test_encode_rows_are_affine_combinations():
    code = BerrutCode(8, 2)
    np.testing.assert_allclose(code.encode_matrix.sum(axis=1), 1.0, atol=1e-13)
    assert code.encode_matrix.shape == (10, 8)


def test_constants_decode_exactly():
    code = BerrutCode(6, 2, num_workers=12)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 3))
    coded = code.encode(x)
    # A constant model is reproduced exactly from any subset.
    constant = np.full((4, 12, 5), 2.5)
    available = rng.random((4, 12)) < 0.7
    available[:, 0] = True
    np.testing.assert_allclose(code.decode(constant, available), 2.5, rtol=1e-13)
    assert code.decode(coded, np.ones(12, bool)).shape == (4, 6, 3)


def test_decode_ignores_absent_rows_even_if_nan():
    code = BerrutCode(4, 1)
    y = np.arange(10.0).reshape(1, 5, 2)
    available = np.array([True, False, True, True, True])
    with_nan = y.copy()
    with_nan[0, 1] = np.nan
    np.testing.assert_array_equal(code.decode(with_nan, available), code.decode(y, available))


def test_decode_per_group_masks_equals_one_at_a_time():
    code = BerrutCode(5, 2)
    rng = np.random.default_rng(11)
    y = rng.normal(size=(6, 7, 3))
    available = np.ones((6, 7), bool)
    for g in range(6):
        available[g, rng.choice(7, 2, replace=False)] = False

    batched = code.decode(y, available)

    for g in range(6):
        single = code.decode(y[g : g + 1], available[g])
        np.testing.assert_allclose(batched[g], single[0], rtol=0, atol=0)


def test_node_collisions_give_exact_queries():
    # N = 2K with cos(i pi / N): every odd worker node equals a query node.
    code = BerrutCode(4, 4, nodes="second-kind-open")
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    coded = code.encode(x)
    collided = code.beta[1::2]
    np.testing.assert_allclose(np.sort(collided), np.sort(code.alpha), atol=1e-15)
    # A worker at a query node receives that query unchanged.
    for i in range(1, 8, 2):
        j = int(np.argmin(np.abs(code.alpha - code.beta[i])))
        np.testing.assert_array_equal(coded[:, i], x[:, j])
    np.testing.assert_array_equal(code.exact_queries(np.ones(8, bool)), np.ones(4, bool))
    available = np.ones(8, bool)
    available[1] = False
    assert code.exact_queries(available).sum() == 3
    decoded = code.decode(coded, np.ones(8, bool))
    np.testing.assert_array_equal(decoded, x)


def test_default_code_keeps_the_raw_queries():
    code = BerrutCode(8, 1)
    assert code.node_family == "paired"
    x = np.random.default_rng(2).normal(size=(3, 8, 4))
    available = np.ones(9, bool)
    available[code.beta == code.alpha[5]] = False  # the raw worker of query 5 straggles
    decoded = code.decode(code.encode(x), available)
    exact = code.exact_queries(available)
    assert exact.sum() == 7
    assert not exact[5]
    np.testing.assert_array_equal(decoded[:, exact], x[:, exact])


def test_default_beyond_paired_range_is_second_kind_open():
    assert BerrutCode(4, 8).node_family == "paired"
    assert BerrutCode(4, 9).node_family == "second-kind-open"


def test_no_collision_means_approximate():
    code = BerrutCode(8, 1, nodes="second-kind")
    assert not code.exact_queries(np.ones(9, bool)).any()


def test_more_results_decode_more_accurately():
    code = BerrutCode(8, 4)
    t = np.linspace(-1, 1, 8)
    x = np.sin(2 * t)[None, :, None]
    y = np.tanh(code.encode(x))
    truth = np.tanh(x)
    rng = np.random.default_rng(5)
    errors_k, errors_n = [], []
    for _ in range(20):
        available = np.ones(12, bool)
        available[rng.choice(12, 4, replace=False)] = False
        errors_k.append(np.abs(code.decode(y, available) - truth).max())
        errors_n.append(np.abs(code.decode(y, np.ones(12, bool)) - truth).max())
    assert np.mean(errors_n) < np.mean(errors_k)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"k": 8, "stragglers": 2, "num_workers": 9}, ValueError,
     r"stragglers=2 with k=8 needs at least K\+S = 10 workers, got num_workers=9"),
    ({"k": 0}, ValueError, "k must be at least 1, got k=0"),
    ({"k": 8, "stragglers": -1}, ValueError, "stragglers must be at least 0, got stragglers=-1"),
    ({"k": 8.0}, TypeError, "k must be an int, got float 8.0"),
    ({"k": True}, TypeError, "k must be an int, got bool True"),
    ({"k": 4, "nodes": "gauss"}, ValueError, "unknown node family 'gauss'"),
])
def test_invalid_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        BerrutCode(**kwargs)


def test_decode_without_results_raises():
    code = BerrutCode(3, 1)
    with pytest.raises(DecodingError, match="group 0 has no worker result to decode from"):
        code.decode(np.zeros((1, 4, 2)), np.zeros(4, bool))


def test_encode_rejects_integer_queries():
    with pytest.raises(TypeError, match="only real-valued queries can be coded, got dtype int64"):
        BerrutCode(2, 1).encode(np.ones((1, 2, 3), dtype=np.int64))


def test_encode_rejects_wrong_group_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(groups, K=3, ...\), got \(1, 2, 4\)"):
        BerrutCode(3, 1).encode(np.ones((1, 2, 4)))
