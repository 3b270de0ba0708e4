import numpy as np
import pytest

from approxifer_onnx.coding import NODE_FAMILIES, query_nodes, resolve_node_family, worker_nodes


def test_query_nodes_are_first_kind_chebyshev():
    expected = [np.cos((2 * j + 1) * np.pi / 8) for j in range(4)]
    np.testing.assert_allclose(query_nodes(4), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("family", "formula"),
    [
        ("second-kind", lambda i, n: np.cos(i * np.pi / (n - 1))),
        ("second-kind-open", lambda i, n: np.cos(i * np.pi / n)),
        ("first-kind", lambda i, n: np.cos((2 * i + 1) * np.pi / (2 * n))),
    ],
)
def test_worker_node_families(family, formula):
    n = 9
    expected = [formula(i, n) for i in range(n)]
    nodes = worker_nodes(n, family)
    np.testing.assert_allclose(nodes, expected, rtol=0, atol=1e-15)
    assert np.all(np.diff(nodes) < 0)


def test_every_family_is_documented():
    assert set(NODE_FAMILIES) == {"second-kind", "second-kind-open", "first-kind", "systematic"}


def test_systematic_contains_query_nodes_bit_for_bit():
    nodes = worker_nodes(11, "systematic", k=8)
    assert len(nodes) == 11
    assert np.all(np.diff(nodes) < 0)
    alpha = query_nodes(8)
    assert all(a in nodes for a in alpha)
    parity = np.setdiff1d(nodes, alpha)
    # Each parity node sits midway, in angle, between two neighbouring query nodes.
    angles = np.arccos(parity) * 8 / np.pi
    np.testing.assert_allclose(angles, np.round(angles), atol=1e-12)


def test_systematic_without_parity_is_the_query_nodes():
    np.testing.assert_array_equal(worker_nodes(4, "systematic", k=4), query_nodes(4))


def test_systematic_needs_at_most_k_minus_one_parity_workers():
    with pytest.raises(ValueError, match="needs K to 2K-1 workers, got k=4 and num_workers=8"):
        worker_nodes(8, "systematic", k=4)


def test_systematic_needs_k():
    with pytest.raises(TypeError, match="needs k"):
        worker_nodes(5, "systematic")


@pytest.mark.parametrize(("k", "n", "family"), [
    (8, 9, "systematic"), (8, 15, "systematic"), (8, 16, "second-kind-open"), (1, 1, "systematic"),
])
def test_auto_resolves_by_parity_count(k, n, family):
    assert resolve_node_family("auto", k, n) == family


def test_explicit_family_is_kept():
    assert resolve_node_family("first-kind", 8, 9) == "first-kind"


def test_unknown_family_lists_choices():
    with pytest.raises(ValueError, match="unknown node family 'chebyshev'; choose one of 'second-kind'"):
        worker_nodes(5, "chebyshev")


def test_single_second_kind_node_is_zero():
    np.testing.assert_array_equal(worker_nodes(1, "second-kind"), [0.0])


@pytest.mark.parametrize(("value", "error", "message"), [
    (0, ValueError, "num_workers must be at least 1, got num_workers=0"),
    (2.0, TypeError, "num_workers must be an int, got float 2.0"),
])
def test_invalid_worker_count(value, error, message):
    with pytest.raises(error, match=message):
        worker_nodes(value)
