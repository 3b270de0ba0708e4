"""Floater-Hormann barycentric rational interpolation of order d, as a decode matrix.

Floater and Hormann (2007, "Barycentric rational interpolation with no poles and high rates of
approximation", Numer. Math. 107) blend the polynomial interpolants of degree d through every
d + 1 consecutive nodes. For distinct nodes sorted in decreasing order, t_0 > ... > t_{m-1},
the interpolant has the barycentric form

    r(z) = sum_k [w_k / (z - t_k)] v_k  /  sum_k [w_k / (z - t_k)]

with weights

    w_k = (-1)^(k - d) * sum_{i in J_k} prod_{j = i, j != k}^{i + d} 1 / |t_k - t_j|,
    J_k = {i : 0 <= i <= m - 1 - d and k - d <= i <= k}.

Order d = 0 gives Berrut's interpolant (w_k = (-1)^k), d = m - 1 the polynomial interpolant.
For any d the interpolant has no real poles, and it reproduces polynomials of degree at most d.
"""

from __future__ import annotations

import numpy as np

from .berrut import check_points_and_nodes

__all__ = ["floater_hormann_matrix", "floater_hormann_weights"]


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an int, got {type(order).__name__} {order!r}")
    if order < 0:
        raise ValueError(f"order must be at least 0, got order={order}")
    return int(order)


def floater_hormann_weights(nodes, order: int) -> np.ndarray:
    """Compute the barycentric weights w_k of the Floater-Hormann interpolant of order d.

    Parameters
    ----------
    nodes : array_like of float, shape (m,), m >= 1
        Distinct nodes, in any order.
    order : int, >= 0
        The blending order d. An order above m - 1 is lowered to m - 1, which gives the
        polynomial interpolant through all nodes.

    Returns
    -------
    ndarray of float64, shape (m,)
        The weight of each node, in the order of `nodes`. The sign follows the node's position
        in the node set sorted in decreasing order, so for d = 0 the weights equal
        `alternating_signs(nodes)`.
    """
    order = _check_order(order)
    _, nodes, _ = check_points_and_nodes(np.zeros(0), nodes, "Floater-Hormann")
    count = len(nodes)
    order = min(order, count - 1)

    descending = np.argsort(-nodes, kind="stable")
    t = nodes[descending]  # t_0 > t_1 > ... > t_{m-1}
    sorted_weights = np.zeros(count)
    # Window i covers the d + 1 consecutive nodes t_i .. t_{i+d}. Each node k in it gains the
    # product of 1 / |t_k - t_j| over the other nodes j of the window.
    for start in range(count - order):
        window = t[start : start + order + 1]
        distances = np.abs(window[:, None] - window[None, :])
        np.fill_diagonal(distances, 1.0)
        sorted_weights[start : start + order + 1] += 1.0 / np.prod(distances, axis=1)
    positions = np.arange(count)
    sorted_weights *= np.where((positions - order) % 2 == 0, 1.0, -1.0)

    weights = np.empty(count)
    weights[descending] = sorted_weights
    return weights


def floater_hormann_matrix(points, nodes, order: int) -> np.ndarray:
    """Build the matrix that evaluates the Floater-Hormann interpolant through `nodes` at `points`.

    Same contract as `berrut_matrix`, to which it reduces for ``order=0``.

    Parameters
    ----------
    points : array_like of float, shape (p,)
        Evaluation points z.
    nodes : array_like of float, shape (m,), m >= 1
        Distinct interpolation nodes, in any order.
    order : int, >= 0
        The blending order d; lowered to m - 1 when fewer than d + 1 nodes are given.

    Returns
    -------
    ndarray of float64, shape (p, m)
        W with r(points) = W @ values for values given in the order of `nodes`. Each row sums
        to one. A point within `node_tolerance` of a node gets the unit row of that node.

    Raises
    ------
    TypeError
        If `order` is not an int.
    ValueError
        If `order` is negative, or `nodes` is empty, not finite or contains a repeated node.

    Notes
    -----
    Normalising each row removes the common scale of the weights, which grow like the inverse
    d-th power of the node spacing. The Lebesgue constant still grows quickly with d on
    unevenly spaced nodes, so orders above a few amplify errors in the values as polynomial
    interpolation does.
    """
    order = _check_order(order)
    points, nodes, tolerance = check_points_and_nodes(points, nodes, "Floater-Hormann")
    weights = floater_hormann_weights(nodes, order)

    difference = points[:, None] - nodes[None, :]  # (p, m)
    at_node = np.abs(difference) <= tolerance

    # Away from the nodes: w_k / (z - t_k), normalised so that each row sums to one.
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = weights[None, :] / difference
    hits = at_node.any(axis=1)
    terms[hits] = 0.0
    matrix = terms / np.where(hits, 1.0, terms.sum(axis=1))[:, None]

    # At a node: the limit of r(z) is the node's own value.
    matrix[hits] = at_node[hits].astype(np.float64)
    return matrix
