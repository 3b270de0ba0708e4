"""Interpolation nodes of the code: Chebyshev points for queries and workers.

Queries sit at the Chebyshev points of the first kind, alpha_j = cos((2j + 1) pi / (2K)).
Workers sit at one of the families in `NODE_FAMILIES`; all nodes lie in [-1, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AUTO",
    "DEFAULT_NODE_FAMILY",
    "NODE_FAMILIES",
    "query_nodes",
    "resolve_node_family",
    "worker_nodes",
]

#: Worker node families, by name, with the formula for i = 0..N-1.
NODE_FAMILIES = {
    # cos(i pi / (N - 1)): the N Chebyshev points of the second kind, both endpoints included.
    # This is the formula printed in the ApproxIFER and BACC papers.
    "second-kind": "cos(i pi / (N - 1))",
    # cos(i pi / N): the N + 1 second-kind points without the last one (-1). The ApproxIFER
    # authors' accuracy scripts use this family.
    "second-kind-open": "cos(i pi / N)",
    # cos((2i + 1) pi / (2N)): Chebyshev points of the first kind, no endpoints.
    "first-kind": "cos((2i + 1) pi / (2N))",
    # The K query nodes themselves, so K workers receive the raw queries and answer exactly,
    # plus N - K parity nodes at the angle midway between two neighbouring query nodes, spread
    # evenly over the K - 1 gaps. Needs N - K <= K - 1.
    "systematic": "alpha_j, j = 0..K-1, and cos((g + 1) pi / K) for N - K gaps g",
    # The K query nodes, plus each parity node a small angle PAIR_OFFSET pi / K from one query
    # node, with the queries taken evenly. A parity node's coded query is mostly its one query,
    # so that query's prediction survives the loss of its raw worker. Parity nodes fill one
    # side of the queries first, then the other, so N - K <= 2K.
    "paired": "alpha_j, j = 0..K-1, and cos((2j + 1) pi / (2K) +- PAIR_OFFSET pi / K)",
}

#: Angle between a "paired" parity node and its query node, as a fraction of the angle pi / K
#: between neighbouring query nodes.
PAIR_OFFSET = 0.05

#: Picks "paired" when N - K <= 2K, else "second-kind-open".
AUTO = "auto"

# Chosen on measured accuracy. benchmarks/coded_accuracy.py, the zoo ResNet-18 on the 10,000
# Fashion-MNIST test images, K=8, S=1, one random straggler per group: "second-kind" .50,
# "second-kind-open" .72, "systematic" .83, because 7 of 8 queries keep their exact prediction.
# "paired" keeps that and also saves most queries whose raw worker is lost. On the zoo
# ResNet-18 it is within 0.4 points of "systematic" or better in every straggler setting of
# docs/benchmarks-decoding.md. After dropping located wrong workers it stays within 2 points
# of no attack below the paper's worker count in every setting measured, where "systematic"
# lost 2 to 11 points in five settings of six (docs/benchmarks-byzantine.md). With N - K > 2K
# no placement keeps the raw queries, and "second-kind-open" was the best all-coded family in
# most settings measured.
DEFAULT_NODE_FAMILY = AUTO


def resolve_node_family(family: str, k: int, n: int) -> str:
    """Return the node family that `family` stands for with K queries and N workers.

    "auto" becomes "paired" when 0 <= N - K <= 2K and "second-kind-open" otherwise; any other
    name is returned unchanged.
    """
    if family != AUTO:
        return family
    return "paired" if 0 <= n - k <= 2 * k else "second-kind-open"


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {name}={value}")
    return int(value)


def query_nodes(k: int) -> np.ndarray:
    """Return the K query nodes alpha_j = cos((2j + 1) pi / (2K)), in decreasing order.

    Parameters
    ----------
    k : int, >= 1
        Queries per group.

    Returns
    -------
    ndarray of float64, shape (k,)
    """
    k = _check_count("k", k)
    j = np.arange(k)
    return np.cos((2 * j + 1) * np.pi / (2 * k))


def worker_nodes(n: int, family: str = "second-kind-open", k: int | None = None) -> np.ndarray:
    """Return the N worker nodes beta_i of a node family, in decreasing order.

    Parameters
    ----------
    n : int, >= 1
        Workers per group.
    family : {"second-kind", "second-kind-open", "first-kind", "systematic", "paired"}
        The node family; `NODE_FAMILIES` gives each formula.
    k : int, optional
        Queries per group; required by "systematic" and "paired".

    Returns
    -------
    ndarray of float64, shape (n,)

    Notes
    -----
    With a single worker, "second-kind" has no defined spacing and returns [0.0], the one-point
    Chebyshev grid.
    """
    n = _check_count("num_workers", n)
    if family not in NODE_FAMILIES:
        choices = ", ".join(repr(name) for name in NODE_FAMILIES)
        raise ValueError(f"unknown node family {family!r}; choose one of {choices} or 'auto'")
    if family in ("systematic", "paired"):
        if k is None:
            raise TypeError(f"the {family!r} node family needs k, the queries per group")
        build = _systematic_nodes if family == "systematic" else _paired_nodes
        return build(_check_count("k", k), n)

    i = np.arange(n)
    if family == "second-kind":
        if n == 1:
            return np.zeros(1)
        return np.cos(i * np.pi / (n - 1))
    if family == "second-kind-open":
        return np.cos(i * np.pi / n)
    return np.cos((2 * i + 1) * np.pi / (2 * n))


def _systematic_nodes(k: int, n: int) -> np.ndarray:
    parity = n - k
    if not 0 <= parity <= k - 1:
        raise ValueError(
            f"the 'systematic' node family needs K to 2K-1 workers, got k={k} and num_workers={n}; "
            f"use between {k} and {2 * k - 1} workers or the 'second-kind-open' nodes"
        )
    # Gap g lies between alpha_g and alpha_{g+1}, at angles (2g+1) pi/(2K) and (2g+3) pi/(2K),
    # so its midpoint angle is (g+1) pi/K. The query nodes are included bit for bit, so the
    # encode row of their workers is a unit vector.
    gaps = np.floor((np.arange(parity) + 0.5) * (k - 1) / parity).astype(int) if parity else []
    parity_nodes = np.cos((np.asarray(gaps, dtype=float) + 1) * np.pi / k)
    return np.sort(np.concatenate([query_nodes(k), parity_nodes]))[::-1]


def _spread(count: int, k: int) -> np.ndarray:
    """Return `count` of the query indices 0..K-1, spread evenly (count <= K)."""
    return np.floor((np.arange(count) + 0.5) * k / count).astype(int) if count else np.zeros(0, int)


def _paired_nodes(k: int, n: int) -> np.ndarray:
    parity = n - k
    if not 0 <= parity <= 2 * k:
        raise ValueError(
            f"the 'paired' node family needs K to 3K workers, got k={k} and num_workers={n}; "
            f"use between {k} and {3 * k} workers or the 'second-kind-open' nodes"
        )
    theta = (2 * np.arange(k) + 1) * np.pi / (2 * k)
    first = min(parity, k)
    # The first K parity nodes sit on the side of larger angles and the rest on the other side.
    # An offset below 1/2 keeps every angle inside (0, pi) and between the same two
    # neighbouring query nodes, so all nodes are distinct.
    angles = np.concatenate([
        theta[_spread(first, k)] + PAIR_OFFSET * np.pi / k,
        theta[_spread(parity - first, k)] - PAIR_OFFSET * np.pi / k,
    ])
    return np.sort(np.concatenate([query_nodes(k), np.cos(angles)]))[::-1]
