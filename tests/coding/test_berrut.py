"""Berrut interpolation against an independent exact evaluation with fractions.Fraction."""

from fractions import Fraction

import numpy as np
import pytest

from approxifer_onnx.coding import alternating_signs, berrut_matrix


def exact_berrut(z, nodes, values):
    """Evaluate Berrut's interpolant in exact rational arithmetic, signs over sorted positions."""
    z = Fraction(z)
    ordered = sorted(zip(nodes, values), key=lambda pair: -pair[0])
    numerator = Fraction(0)
    denominator = Fraction(0)
    for position, (node, value) in enumerate(ordered):
        node = Fraction(node)
        if node == z:
            return Fraction(value)
        weight = Fraction((-1) ** position) / (z - node)
        numerator += weight * Fraction(value)
        denominator += weight
    return numerator / denominator


@pytest.mark.parametrize("seed", range(5))
def test_matches_exact_rational_evaluation(seed):
    rng = np.random.default_rng(seed)
    nodes = rng.permutation(np.linspace(-1, 1, 7) + rng.uniform(-0.05, 0.05, 7))
    values = rng.normal(size=7)
    points = rng.uniform(-1.2, 1.2, 11)

    computed = berrut_matrix(points, nodes) @ values

    expected = [float(exact_berrut(z, nodes, values)) for z in points]
    np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-12)


def test_exact_at_nodes_without_division_warning():
    nodes = np.cos(np.arange(6) * np.pi / 5)
    values = np.arange(6.0) ** 2
    with np.errstate(all="raise"):
        matrix = berrut_matrix(nodes, nodes)
    np.testing.assert_array_equal(matrix, np.eye(6))
    np.testing.assert_array_equal(matrix @ values, values)


def test_node_computed_by_another_formula_counts_as_equal():
    nodes = np.array([np.cos(np.pi / 4), 0.0, -0.5])
    point = np.sqrt(2) / 2  # equal to cos(pi/4) up to rounding
    np.testing.assert_array_equal(berrut_matrix([point], nodes), [[1.0, 0.0, 0.0]])


def test_weights_sum_to_one():
    rng = np.random.default_rng(1)
    matrix = berrut_matrix(rng.uniform(-3, 3, 50), np.cos(np.arange(9) * np.pi / 9))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-13)


def test_reproduces_constants():
    nodes = np.cos((2 * np.arange(8) + 1) * np.pi / 16)
    matrix = berrut_matrix(np.linspace(-1, 1, 21), nodes)
    np.testing.assert_allclose(matrix @ np.full(8, 3.25), 3.25, rtol=1e-13)


def test_no_real_poles_between_nodes():
    nodes = np.cos(np.arange(10) * np.pi / 9)
    points = np.linspace(-1, 1, 2001)
    values = np.sin(3 * nodes)
    interpolated = berrut_matrix(points, nodes) @ values
    assert np.all(np.isfinite(interpolated))
    # Berrut's interpolant converges at rate O(h) for smooth data, so it stays close to sin(3z).
    assert np.max(np.abs(interpolated - np.sin(3 * points))) < 0.2


def test_sign_follows_sorted_position_not_index():
    # Sorted decreasingly: 0.9 (+), 0.4 (-), -0.2 (+), -0.8 (-).
    nodes = np.array([-0.2, 0.9, 0.4, -0.8])
    np.testing.assert_array_equal(alternating_signs(nodes), [1.0, 1.0, -1.0, -1.0])


def test_subset_sign_regression():
    # Worker 2 dropped: nodes 3 and 4 move up one position, so their signs flip relative to a
    # (-1)^worker_index rule. Using worker indices would give a visibly different interpolant.
    beta = np.cos(np.arange(5) * np.pi / 4)
    subset = [0, 1, 3, 4]
    values = np.array([1.0, -2.0, 0.5, 4.0])
    point = 0.3

    computed = berrut_matrix([point], beta[subset]) @ values
    expected = float(exact_berrut(point, beta[subset], values))
    assert computed[0] == pytest.approx(expected, rel=1e-12)

    index_signs = np.array([(-1.0) ** i for i in subset])
    wrong_weights = index_signs / (point - beta[subset])
    wrong = wrong_weights @ values / wrong_weights.sum()
    assert abs(wrong - expected) > 0.1


def test_rejects_repeated_nodes():
    with pytest.raises(ValueError, match="nodes must be distinct, but 0.5 appears more than once"):
        berrut_matrix([0.0], [0.5, 0.1, 0.5])


def test_rejects_empty_nodes():
    with pytest.raises(ValueError, match="needs at least one node"):
        berrut_matrix([0.0], [])


def test_single_node_is_constant():
    np.testing.assert_array_equal(berrut_matrix([-1.0, 0.2, 5.0], [0.3]), np.ones((3, 1)))
