"""Coding math in pure NumPy: nodes, Berrut interpolation, encoding and decoding."""

from .berrut import alternating_signs, berrut_matrix
from .code import BerrutCode
from .decoders import DECODERS, decode_with
from .floater_hormann import floater_hormann_matrix
from .locators import (
    DEFAULT_LOCATOR,
    LOCATORS,
    LocateResult,
    Locator,
    calibrate_tolerance,
    check_num_workers,
    denominator_values,
    locate,
    required_results,
    required_workers,
)
from .placements import make_code
from .nodes import (
    AUTO,
    DEFAULT_NODE_FAMILY,
    NODE_FAMILIES,
    query_nodes,
    resolve_node_family,
    worker_nodes,
)

__all__ = [
    "AUTO",
    "DEFAULT_NODE_FAMILY",
    "DEFAULT_LOCATOR",
    "LOCATORS",
    "NODE_FAMILIES",
    "DECODERS",
    "BerrutCode",
    "LocateResult",
    "Locator",
    "alternating_signs",
    "berrut_matrix",
    "calibrate_tolerance",
    "check_num_workers",
    "decode_with",
    "denominator_values",
    "floater_hormann_matrix",
    "locate",
    "make_code",
    "query_nodes",
    "required_results",
    "required_workers",
    "resolve_node_family",
    "worker_nodes",
]
