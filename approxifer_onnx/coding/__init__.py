"""Coding math in pure NumPy: nodes, Berrut interpolation, encoding and decoding."""

from .berrut import alternating_signs, berrut_matrix
from .code import BerrutCode
from .nodes import DEFAULT_NODE_FAMILY, NODE_FAMILIES, query_nodes, worker_nodes

__all__ = [
    "DEFAULT_NODE_FAMILY",
    "NODE_FAMILIES",
    "BerrutCode",
    "alternating_signs",
    "berrut_matrix",
    "query_nodes",
    "worker_nodes",
]
