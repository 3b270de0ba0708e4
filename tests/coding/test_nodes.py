import numpy as np
import pytest

from approxifer_onnx.coding import NODE_FAMILIES, query_nodes, worker_nodes


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
    assert set(NODE_FAMILIES) == {"second-kind", "second-kind-open", "first-kind"}


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
