"""Berrut's rational interpolant as a matrix from node values to values at evaluation points.

For distinct nodes t_0 > t_1 > ... > t_{m-1} and values v_j, Berrut's first interpolant is

    r(z) = sum_j [(-1)^j / (z - t_j)] v_j  /  sum_j [(-1)^j / (z - t_j)].

It has no real poles for any node set, interpolates (r(t_j) = v_j) and reproduces constants,
because its weights l_j(z) sum to one. For fixed nodes and evaluation points the map v -> r(z)
is linear, so it is computed once as a matrix and applied to whole batches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["alternating_signs", "berrut_matrix", "check_points_and_nodes", "node_tolerance"]


def node_tolerance(points: np.ndarray, nodes: np.ndarray) -> float:
    """Return the distance below which an evaluation point counts as equal to a node.

    The tolerance is a small multiple of float64 eps scaled by the magnitude of the points, so
    that nodes computed by different formulas (cos(pi/4) from two expressions, say) still match.
    """
    scale = max(1.0, float(np.max(np.abs(points), initial=0.0)), float(np.max(np.abs(nodes))))
    return 64 * np.finfo(np.float64).eps * scale


def check_points_and_nodes(
    points, nodes, interpolant: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """Validate evaluation points and interpolation nodes for a barycentric interpolant.

    Returns
    -------
    points, nodes : ndarray of float64, 1-D
    tolerance : float
        `node_tolerance` of the two.

    Raises
    ------
    ValueError
        If either is not 1-D or not finite, `nodes` is empty, or a node repeats.
    """
    points = np.atleast_1d(np.asarray(points, dtype=np.float64))
    nodes = np.atleast_1d(np.asarray(nodes, dtype=np.float64))
    if points.ndim != 1 or nodes.ndim != 1:
        raise ValueError(
            f"points and nodes must be 1-D, got shapes {points.shape} and {nodes.shape}"
        )
    if nodes.size == 0:
        raise ValueError(f"{interpolant} interpolation needs at least one node, got none")
    if not (np.all(np.isfinite(nodes)) and np.all(np.isfinite(points))):
        raise ValueError("points and nodes must be finite")

    tolerance = node_tolerance(points, nodes)
    sorted_nodes = np.sort(nodes)
    gaps = np.diff(sorted_nodes)
    if np.any(gaps <= tolerance):
        repeated = float(sorted_nodes[1:][gaps <= tolerance][0])
        raise ValueError(f"nodes must be distinct, but {repeated!r} appears more than once")
    return points, nodes, tolerance


def alternating_signs(nodes: np.ndarray) -> np.ndarray:
    """Return (-1)^p for each node, p being its position in the node set sorted decreasingly.

    The sign must follow the position in the set actually used, never the caller's index: after
    stragglers are dropped from F = {0, 1, 3, 4}, node 3 is at position 2 and gets +1, not -1.
    """
    positions = np.empty(len(nodes), dtype=np.int64)
    positions[np.argsort(-nodes, kind="stable")] = np.arange(len(nodes))
    return np.where(positions % 2 == 0, 1.0, -1.0)


def berrut_matrix(points: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Build the matrix that evaluates Berrut's interpolant through `nodes` at `points`.

    Parameters
    ----------
    points : array_like of float, shape (p,)
        Evaluation points z.
    nodes : array_like of float, shape (m,), m >= 1
        Distinct interpolation nodes t_j, in any order.

    Returns
    -------
    ndarray of float64, shape (p, m)
        W with r(points) = W @ values for values given in the order of `nodes`. Each row sums
        to one. A point within `node_tolerance` of a node gets the unit row of that node, so the
        interpolant is exact there and no division by zero happens.

    Raises
    ------
    ValueError
        If `nodes` is empty, not finite or contains a repeated node.
    """
    points, nodes, tolerance = check_points_and_nodes(points, nodes, "Berrut")

    difference = points[:, None] - nodes[None, :]  # (p, m)
    at_node = np.abs(difference) <= tolerance

    # Away from the nodes: the barycentric weights (-1)^position / (z - t_j), normalised.
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = alternating_signs(nodes)[None, :] / difference
    hits = at_node.any(axis=1)
    weights[hits] = 0.0
    matrix = weights / np.where(hits, 1.0, weights.sum(axis=1))[:, None]

    # At a node: the limit of r(z) is the node's own value.
    matrix[hits] = at_node[hits].astype(np.float64)
    return matrix
