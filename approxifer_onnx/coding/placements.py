"""Worker node placements beyond the named families, and codes built on any node specification.

- "shift:s": the one-parameter family beta_i = cos((i + s) pi / N), i = 0..N-1, s in [0, 1].
  It contains two of the named families: s = 0 is "second-kind-open" (cos(i pi / N)) and
  s = 1/2 is "first-kind" (cos((2i + 1) pi / (2N))). s = 1 mirrors s = 0.
- "systematic": K workers sit on the query nodes alpha_j and so receive the raw queries, and
  the other P = N - K parity workers sit between query nodes, at the angle midway between two
  neighbours, in P gaps spread evenly over the K - 1 gaps. A query whose raw worker returns its
  result is decoded exactly, and only the others are interpolated. Needs 1 <= N - K <= K - 1.
"""

from __future__ import annotations

import numpy as np

from .berrut import berrut_matrix
from .code import BerrutCode
from .nodes import AUTO, DEFAULT_NODE_FAMILY, NODE_FAMILIES, query_nodes

__all__ = [
    "SHIFT_PREFIX",
    "SYSTEMATIC",
    "make_code",
    "parse_node_shift",
    "shifted_worker_nodes",
    "systematic_worker_nodes",
]

#: Node specifications starting with this prefix name a shift of the shifted family.
SHIFT_PREFIX = "shift:"

#: Node specification of the systematic placement.
SYSTEMATIC = "systematic"


def shifted_worker_nodes(n: int, shift: float) -> np.ndarray:
    """Return the N worker nodes cos((i + shift) pi / N), i = 0..N-1, in decreasing order.

    Parameters
    ----------
    n : int, >= 1
        Workers per group.
    shift : float in [0, 1]

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_workers must be an int >= 1, got {n!r}")
    shift = float(shift)
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"node shift must be in [0, 1], got shift={shift}")
    return np.cos((np.arange(n) + shift) * np.pi / n)


def systematic_worker_nodes(k: int, n: int) -> np.ndarray:
    """Return the K query nodes and N - K parity nodes between them, in decreasing order.

    Parameters
    ----------
    k : int, >= 2
        Queries per group.
    n : int, K + 1 <= n <= 2K - 1
        Workers per group.

    Returns
    -------
    ndarray of float64, shape (n,)
        Query node alpha_j = cos((2j + 1) pi / (2K)) is included bit for bit, so its worker's
        encode row is a unit vector and the worker receives query j unchanged.
    """
    parity = n - k
    if not 1 <= parity <= k - 1:
        raise ValueError(
            f"systematic nodes need 1 <= N - K <= K - 1 parity workers, got k={k} and "
            f"num_workers={n}; use between {k + 1} and {2 * k - 1} workers or another node family"
        )
    # Gap g lies between alpha_g and alpha_{g+1}, whose angles are (2g+1) pi/(2K) and
    # (2g+3) pi/(2K), so its midpoint angle is (g+1) pi/K.
    gaps = np.floor((np.arange(parity) + 0.5) * (k - 1) / parity).astype(int)
    parity_nodes = np.cos((gaps + 1) * np.pi / k)
    return np.sort(np.concatenate([query_nodes(k), parity_nodes]))[::-1]


def parse_node_shift(nodes: str) -> float | None:
    """Return the shift s of a "shift:s" node specification, or None for another valid one.

    Raises
    ------
    ValueError
        If `nodes` is neither a family of `NODE_FAMILIES`, "systematic" nor "shift:s" with s in
        [0, 1].
    """
    if nodes in NODE_FAMILIES or nodes in (SYSTEMATIC, AUTO):
        return None
    if isinstance(nodes, str) and nodes.startswith(SHIFT_PREFIX):
        try:
            shift = float(nodes[len(SHIFT_PREFIX) :])
        except ValueError:
            shift = float("nan")
        if 0.0 <= shift <= 1.0:
            return shift
    choices = ", ".join(repr(name) for name in NODE_FAMILIES)
    raise ValueError(
        f"nodes={nodes!r} is not a node specification; use one of {choices}, 'systematic' or "
        "'shift:S' with S in [0, 1], e.g. 'shift:0.25'"
    )


def make_code(
    k: int, stragglers: int = 1, *, num_workers: int | None = None, nodes: str = DEFAULT_NODE_FAMILY
) -> BerrutCode:
    """Build a BerrutCode on a named node family, a shifted family member or systematic nodes.

    Parameters
    ----------
    k, stragglers, num_workers
        As in `BerrutCode`.
    nodes : str
        A family of `NODE_FAMILIES`, "shift:s" for `shifted_worker_nodes(N, s)`, or
        "systematic" for `systematic_worker_nodes(K, N)`.

    Returns
    -------
    BerrutCode
        Its `node_family` is the specification string.
    """
    shift = parse_node_shift(nodes)
    if shift is None:
        return BerrutCode(k, stragglers, num_workers=num_workers, nodes=nodes)

    # NOTE: BerrutCode accepts only named families, so these nodes replace the default ones
    # after construction, before any decode matrix is cached.
    code = BerrutCode(k, stragglers, num_workers=num_workers)
    if shift is None:
        code.beta = systematic_worker_nodes(code.k, code.num_workers)
        code.node_family = SYSTEMATIC
    else:
        code.beta = shifted_worker_nodes(code.num_workers, shift)
        code.node_family = f"{SHIFT_PREFIX}{shift!r}"
    code.encode_matrix = berrut_matrix(code.beta, code.alpha)
    return code
