"""Floater-Hormann interpolation against an exact evaluation with fractions.Fraction."""

from fractions import Fraction

import numpy as np
import pytest

from approxifer_onnx.coding import alternating_signs, berrut_matrix, query_nodes, worker_nodes
from approxifer_onnx.coding.floater_hormann import floater_hormann_matrix, floater_hormann_weights


def exact_weights(nodes, order):
    """Return the Floater-Hormann weights of `nodes`, in their given order, as Fractions.

    Written from the textbook formula over the nodes sorted in increasing order. The sign then
    follows the decreasing order that the library uses. That multiplies every weight by the same
    (-1)^(m-1), so the interpolant does not change.
    """
    nodes = [Fraction(node) for node in nodes]
    count = len(nodes)
    d = min(order, count - 1)
    ascending = sorted(range(count), key=lambda index: nodes[index])
    x = [nodes[index] for index in ascending]
    weights = [Fraction(0)] * count
    for k in range(count):
        total = Fraction(0)
        for i in range(max(0, k - d), min(k, count - 1 - d) + 1):
            product = Fraction(1)
            for j in range(i, i + d + 1):
                if j != k:
                    product /= abs(x[k] - x[j])
            total += product
        weights[ascending[k]] = (-1) ** ((count - 1 - k) - d) * total
    return weights


def exact_interpolant(z, nodes, values, order):
    """Evaluate the Floater-Hormann interpolant of order `order` exactly at the rational `z`."""
    z = Fraction(z)
    weights = exact_weights(nodes, order)
    numerator = Fraction(0)
    denominator = Fraction(0)
    for weight, node, value in zip(weights, nodes, values):
        node = Fraction(node)
        if node == z:
            return Fraction(value)
        numerator += weight / (z - node) * Fraction(value)
        denominator += weight / (z - node)
    return numerator / denominator


# (number of nodes, order d): Berrut, low orders, an order equal to m - 1 and one above it.
CASES = [(7, 0), (7, 1), (7, 2), (7, 3), (9, 4), (5, 4), (4, 6)]


@pytest.mark.parametrize("count, order", CASES)
@pytest.mark.parametrize("seed", range(3))
def test_matches_exact_rational_evaluation(count, order, seed):
    rng = np.random.default_rng(seed)
    nodes = rng.permutation(np.linspace(-1, 1, count) + rng.uniform(-0.05, 0.05, count))
    values = rng.normal(size=count)
    points = rng.uniform(-1.2, 1.2, 9)

    computed = floater_hormann_matrix(points, nodes, order) @ values

    expected = [float(exact_interpolant(z, nodes, values, order)) for z in points]
    np.testing.assert_allclose(computed, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("count, order", CASES)
def test_weights_match_exact_weights(count, order):
    rng = np.random.default_rng(count + order)
    nodes = rng.permutation(np.linspace(-1, 1, count) + rng.uniform(-0.05, 0.05, count))

    computed = floater_hormann_weights(nodes, order)

    expected = [float(weight) for weight in exact_weights(nodes, order)]
    np.testing.assert_allclose(computed, expected, rtol=1e-12)


@pytest.mark.parametrize("count", [1, 2, 5, 9])
def test_order_zero_is_berrut(count):
    nodes = worker_nodes(count, "second-kind-open")[::-1]
    points = np.linspace(-1.1, 1.1, 13)

    np.testing.assert_array_equal(floater_hormann_weights(nodes, 0), alternating_signs(nodes))
    np.testing.assert_allclose(
        floater_hormann_matrix(points, nodes, 0), berrut_matrix(points, nodes), atol=1e-14
    )


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_reproduces_polynomials_up_to_order(order):
    nodes = worker_nodes(11, "first-kind")
    points = query_nodes(8)
    coefficients = np.arange(1.0, order + 2.0)  # degree `order`

    estimates = floater_hormann_matrix(points, nodes, order) @ np.polyval(coefficients, nodes)

    np.testing.assert_allclose(estimates, np.polyval(coefficients, points), atol=1e-10)


def test_order_below_degree_does_not_reproduce_polynomial():
    nodes = worker_nodes(11, "first-kind")
    points = query_nodes(8)
    cubic = nodes**3

    estimates = floater_hormann_matrix(points, nodes, 1) @ cubic

    assert np.max(np.abs(estimates - points**3)) > 1e-4


@pytest.mark.parametrize("order", [0, 2, 5])
def test_exact_at_nodes_and_rows_sum_to_one(order):
    nodes = np.array([0.9, -0.3, 0.1, -1.0, 0.5, 0.7])
    points = np.concatenate([nodes, [0.0, 0.33, -0.8]])

    with np.errstate(all="raise"):
        matrix = floater_hormann_matrix(points, nodes, order)

    np.testing.assert_array_equal(matrix[: len(nodes)], np.eye(len(nodes)))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-13)


def test_node_order_does_not_change_interpolant():
    rng = np.random.default_rng(7)
    nodes = worker_nodes(10, "second-kind")
    values = rng.normal(size=10)
    points = query_nodes(8)
    permutation = rng.permutation(10)

    direct = floater_hormann_matrix(points, nodes, 2) @ values
    shuffled = floater_hormann_matrix(points, nodes[permutation], 2) @ values[permutation]

    np.testing.assert_allclose(shuffled, direct, atol=1e-13)


def test_subset_of_nodes_uses_positions_in_subset():
    # Dropping worker 3 must re-index the signs over the remaining sorted nodes.
    nodes = worker_nodes(9, "second-kind-open")
    used = np.delete(nodes, 3)
    values = np.sin(3 * used)
    points = query_nodes(8)

    computed = floater_hormann_matrix(points, used, 1) @ values

    expected = [float(exact_interpolant(z, used, values, 1)) for z in points]
    np.testing.assert_allclose(computed, expected, rtol=1e-10)


def test_higher_order_is_closer_on_smooth_function():
    nodes = worker_nodes(13, "second-kind-open")
    points = query_nodes(12)
    values = np.exp(nodes)

    errors = [
        np.max(np.abs(floater_hormann_matrix(points, nodes, order) @ values - np.exp(points)))
        for order in (0, 1, 3)
    ]

    assert errors[1] < errors[0]
    assert errors[2] < errors[1]


@pytest.mark.parametrize(
    "order, error, message",
    [
        (-1, ValueError, r"order must be at least 0, got order=-1"),
        (1.5, TypeError, r"order must be an int, got float 1.5"),
        (True, TypeError, r"order must be an int, got bool True"),
    ],
)
def test_rejects_invalid_order(order, error, message):
    with pytest.raises(error, match=message):
        floater_hormann_matrix([0.0], [0.5, -0.5], order)


def test_rejects_repeated_and_missing_nodes():
    with pytest.raises(ValueError, match=r"nodes must be distinct, but 0.5 appears more than once"):
        floater_hormann_matrix([0.0], [0.5, 0.5, -0.5], 1)
    with pytest.raises(ValueError, match=r"needs at least one node, got none"):
        floater_hormann_matrix([0.0], [], 1)
    with pytest.raises(ValueError, match=r"points and nodes must be finite"):
        floater_hormann_matrix([np.nan], [0.5, -0.5], 1)
