"""Decoder choices for a BerrutCode: Berrut's interpolant or Floater-Hormann of order d.

The encoder is always Berrut's. The decoder only has to evaluate some interpolant through the
available results (beta_i, f(X~_i)) at the query nodes alpha_j, so any interpolation scheme
with the same contract as `berrut_matrix` can replace it.
"""

from __future__ import annotations

import numpy as np

from .code import BerrutCode
from .floater_hormann import floater_hormann_matrix

__all__ = ["DECODERS", "decode_with", "parse_decoder"]

#: Decoder names, with what each interpolates through the available results.
DECODERS = {
    "berrut": "Berrut's rational interpolant (Floater-Hormann of order 0)",
    "floater-hormann:D": "Floater-Hormann rational interpolant of order D (an integer >= 0)",
}


def parse_decoder(decoder: str) -> int:
    """Return the Floater-Hormann order d of a decoder name: 0 for "berrut".

    Parameters
    ----------
    decoder : str
        "berrut" or "floater-hormann:D" with an integer D >= 0.

    Raises
    ------
    ValueError
        If the name is neither form.
    """
    if not isinstance(decoder, str):
        raise TypeError(f"decoder must be a str, got {type(decoder).__name__} {decoder!r}")
    if decoder == "berrut":
        return 0
    prefix = "floater-hormann:"
    if decoder.startswith(prefix):
        order = decoder[len(prefix) :]
        if order.isdigit():
            return int(order)
    raise ValueError(
        f"decoder={decoder!r} is not a decoder; use 'berrut' or 'floater-hormann:D' with an "
        "integer order D >= 0, e.g. 'floater-hormann:1'"
    )


def decode_with(code: BerrutCode, y: np.ndarray, available: np.ndarray, decoder: str = "berrut"):
    """Decode worker results with the chosen decoder.

    Parameters
    ----------
    code : BerrutCode
        The code that encoded the queries; its nodes alpha and beta are used.
    y : array_like of float, shape (G, N, *out)
        Worker results; rows of workers that are not available are ignored.
    available : array_like of bool, shape (N,) or (G, N)
    decoder : str
        "berrut" (the code's own decoder) or "floater-hormann:D".

    Returns
    -------
    ndarray of float64, shape (G, K, *out)

    Raises
    ------
    DecodingError
        If a group has no available result.
    """
    order = parse_decoder(decoder)
    if decoder == "berrut":
        return code.decode(y, available)

    return code.decode(
        y,
        available,
        decode_matrix=lambda workers: floater_hormann_matrix(code.alpha, code.beta[workers], order),
    )
