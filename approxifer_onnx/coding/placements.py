"""The shifted family of worker nodes, and codes built on any node specification.

"shift:s" is the one-parameter family beta_i = cos((i + s) pi / N), i = 0..N-1, s in [0, 1].
It contains two of the named families: s = 0 is "second-kind-open" (cos(i pi / N)) and
s = 1/2 is "first-kind" (cos((2i + 1) pi / (2N))). s = 1 mirrors s = 0.
"""

from __future__ import annotations

import numpy as np

from .berrut import berrut_matrix
from .code import BerrutCode
from .nodes import AUTO, DEFAULT_NODE_FAMILY, NODE_FAMILIES

__all__ = ["SHIFT_PREFIX", "make_code", "parse_node_shift", "shifted_worker_nodes"]

#: Node specifications starting with this prefix name a shift of the shifted family.
SHIFT_PREFIX = "shift:"


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


def parse_node_shift(nodes: str) -> float | None:
    """Return the shift s of a "shift:s" node specification, or None for another valid one.

    Raises
    ------
    ValueError
        If `nodes` is neither a family of `NODE_FAMILIES`, "auto" nor "shift:s" with s in [0, 1].
    """
    if nodes in NODE_FAMILIES or nodes == AUTO:
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
        f"nodes={nodes!r} is not a node specification; use one of {choices}, 'auto' or "
        "'shift:S' with S in [0, 1], e.g. 'shift:0.25'"
    )


def make_code(
    k: int, stragglers: int = 1, *, num_workers: int | None = None, nodes: str = DEFAULT_NODE_FAMILY
) -> BerrutCode:
    """Build a BerrutCode on a named node family or a member of the shifted family.

    Parameters
    ----------
    k, stragglers, num_workers
        As in `BerrutCode`.
    nodes : str
        A family of `NODE_FAMILIES`, "auto", or "shift:s" for `shifted_worker_nodes(N, s)`.

    Returns
    -------
    BerrutCode
        Its `node_family` is the resolved family name or the "shift:s" string.
    """
    shift = parse_node_shift(nodes)
    if shift is None:
        return BerrutCode(k, stragglers, num_workers=num_workers, nodes=nodes)

    # NOTE: BerrutCode accepts only named families, so the shifted nodes replace the default
    # ones after construction, before any decode matrix is cached.
    code = BerrutCode(k, stragglers, num_workers=num_workers, nodes="second-kind-open")
    code.beta = shifted_worker_nodes(code.num_workers, shift)
    code.node_family = f"{SHIFT_PREFIX}{shift!r}"
    code.encode_matrix = berrut_matrix(code.beta, code.alpha)
    return code
