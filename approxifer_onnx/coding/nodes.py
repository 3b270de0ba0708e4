"""Interpolation nodes of the code: Chebyshev points for queries and workers.

Queries sit at the Chebyshev points of the first kind, alpha_j = cos((2j + 1) pi / (2K)).
Workers sit at one of the families in `NODE_FAMILIES`; all nodes lie in [-1, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_NODE_FAMILY", "NODE_FAMILIES", "query_nodes", "worker_nodes"]

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
}

# Chosen on measured accuracy: on Fashion-MNIST with the zoo ResNet-18 at K=8, S=1 and one random
# straggler per group, decoding from "second-kind-open" nodes beats "second-kind" by a wide margin
# (benchmarks/coded_accuracy.py records the numbers).
DEFAULT_NODE_FAMILY = "second-kind-open"


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


def worker_nodes(n: int, family: str = DEFAULT_NODE_FAMILY) -> np.ndarray:
    """Return the N worker nodes beta_i of a node family, in decreasing order.

    Parameters
    ----------
    n : int, >= 1
        Workers per group.
    family : {"second-kind", "second-kind-open", "first-kind"}
        The node family; `NODE_FAMILIES` gives each formula.

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
        raise ValueError(f"unknown node family {family!r}; choose one of {choices}")

    i = np.arange(n)
    if family == "second-kind":
        if n == 1:
            return np.zeros(1)
        return np.cos(i * np.pi / (n - 1))
    if family == "second-kind-open":
        return np.cos(i * np.pi / n)
    return np.cos((2 * i + 1) * np.pi / (2 * n))
