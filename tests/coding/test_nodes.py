import numpy as np
import pytest

from approxifer_onnx.coding import (
    NODE_FAMILIES,
    BerrutCode,
    query_nodes,
    resolve_node_family,
    worker_nodes,
)
from approxifer_onnx.coding.nodes import PAIR_OFFSET


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
    assert set(NODE_FAMILIES) == {
        "second-kind", "second-kind-open", "first-kind", "systematic", "paired",
    }


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


@pytest.mark.parametrize(("k", "n"), [(8, 9), (8, 15), (8, 16), (8, 20), (8, 24), (1, 3), (12, 29)])
def test_paired_parity_beside_query_nodes(k, n):
    nodes = worker_nodes(n, "paired", k=k)
    assert len(nodes) == n
    assert np.all(np.diff(nodes) < 0)
    alpha = query_nodes(k)
    assert all(a in nodes for a in alpha)
    # Every parity node lies PAIR_OFFSET pi / K in angle from its query node, and no query has
    # two parity nodes on one side.
    step = np.pi / k
    parity_angles = np.arccos(np.setdiff1d(nodes, alpha))
    alpha_angles = np.arccos(alpha)
    offsets = parity_angles[:, None] - alpha_angles[None, :]
    nearest = np.argmin(np.abs(offsets), axis=1)
    chosen = offsets[np.arange(len(parity_angles)), nearest]
    np.testing.assert_allclose(np.abs(chosen), PAIR_OFFSET * step, rtol=1e-9)
    sides = set(zip(nearest.tolist(), np.sign(chosen).tolist()))
    assert len(sides) == n - k
    # Up to K parity nodes, each pairs with a different query.
    assert len(set(nearest.tolist())) == min(n - k, k)


def test_paired_coded_query_is_mostly_its_query():
    code = BerrutCode(8, 0, num_workers=16, nodes="paired")
    raw = np.isin(code.beta, code.alpha)
    weights = np.abs(code.encode_matrix[~raw])
    assert np.all(weights.max(axis=1) > 0.8)


def test_paired_needs_at_most_2k_parity_workers():
    with pytest.raises(ValueError, match="needs K to 3K workers, got k=4 and num_workers=13"):
        worker_nodes(13, "paired", k=4)


def test_systematic_needs_k():
    with pytest.raises(TypeError, match="needs k"):
        worker_nodes(5, "systematic")


@pytest.mark.parametrize(("k", "n", "family"), [
    (8, 9, "paired"), (8, 24, "paired"), (8, 25, "second-kind-open"), (1, 1, "paired"),
    (1, 3, "paired"), (1, 4, "second-kind-open"),
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
