"""The ApproxIFER code: Berrut encoding of K queries into N coded queries, and decoding.

Encoding evaluates Berrut's interpolant through (alpha_j, X_j) at the worker nodes beta_i;
decoding evaluates the interpolant through (beta_i, f(X~_i)), i in F, at the query nodes alpha_j,
for whichever set F of workers returned a result.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..exceptions import DecodingError
from .berrut import berrut_matrix, node_tolerance
from .nodes import DEFAULT_NODE_FAMILY, query_nodes, resolve_node_family, worker_nodes

__all__ = ["BerrutCode"]


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {name}={value}")
    return int(value)


class BerrutCode:
    """Berrut approximate code for groups of K queries sent to N workers.

    Parameters
    ----------
    k : int, >= 1
        Queries per group.
    stragglers : int, >= 0
        Stragglers S tolerated: the decoder works from any N - S results.
    num_workers : int, optional
        Workers N. Defaults to the minimum, K + S; more workers give more accurate decoding.
    nodes : str
        Worker node family, one of `approxifer_onnx.coding.NODE_FAMILIES`, or "auto":
        "paired" when N - K <= 2K, else "second-kind-open". `node_family` is the
        family actually used.

    Attributes
    ----------
    alpha : ndarray, shape (K,)
        Query nodes, Chebyshev points of the first kind.
    beta : ndarray, shape (N,)
        Worker nodes.
    encode_matrix : ndarray, shape (N, K)
        Row i contains the weights of the K queries in coded query i; each row sums to one.

    Examples
    --------
    >>> code = BerrutCode(k=4, stragglers=1)
    >>> x = np.arange(8.0).reshape(1, 4, 2)   # one group of 4 queries with 2 features
    >>> coded = code.encode(x)                 # (1, 5, 2)
    >>> available = np.array([True, True, False, True, True])
    >>> code.decode(coded, available).shape    # an identity "model": decode the coded queries
    (1, 4, 2)
    """

    def __init__(
        self,
        k: int,
        stragglers: int = 1,
        *,
        num_workers: int | None = None,
        nodes: str = DEFAULT_NODE_FAMILY,
    ):
        self.k = _check_int("k", k, 1)
        self.stragglers = _check_int("stragglers", stragglers, 0)
        minimum = self.k + self.stragglers
        if num_workers is None:
            num_workers = minimum
        num_workers = _check_int("num_workers", num_workers, 1)
        if num_workers < minimum:
            raise ValueError(
                f"stragglers={self.stragglers} with k={self.k} needs at least K+S = {minimum} "
                f"workers, got num_workers={num_workers}; raise num_workers or lower stragglers"
            )
        self.num_workers = num_workers
        self.node_family = resolve_node_family(nodes, self.k, self.num_workers)
        self.alpha = query_nodes(self.k)
        self.beta = worker_nodes(self.num_workers, self.node_family, k=self.k)
        self.encode_matrix = berrut_matrix(self.beta, self.alpha)
        self._decode_matrix = lru_cache(maxsize=256)(self._build_decode_matrix)

    @property
    def min_results(self) -> int:
        """Results the decoder waits for under ApproxIFER's first-k policy: N - S."""
        return self.num_workers - self.stragglers

    def __repr__(self) -> str:
        return (
            f"BerrutCode(k={self.k}, stragglers={self.stragglers}, "
            f"num_workers={self.num_workers}, nodes={self.node_family!r})"
        )

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Encode groups of K queries into N coded queries each.

        Parameters
        ----------
        x : array_like of float, shape (G, K, *shape)

        Returns
        -------
        ndarray of float64, shape (G, N, *shape)
        """
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[1] != self.k:
            raise ValueError(f"x must have shape (groups, K={self.k}, ...), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(
                f"only real-valued queries can be coded, got dtype {x.dtype}; cast to float first"
            )
        # tensordot runs one BLAS product over all groups; it upcasts float32 queries exactly.
        coded = np.tensordot(self.encode_matrix, x, axes=([1], [1]))  # (N, G, *shape)
        return np.moveaxis(coded, 0, 1)

    def decode_matrix(self, workers) -> np.ndarray:
        """Return the (K, |F|) matrix that decodes the results of `workers` (the set F).

        Parameters
        ----------
        workers : sequence of int
            Distinct worker indices in F, in the order their results will be stacked.
        """
        workers = tuple(int(i) for i in workers)
        if not workers:
            raise DecodingError("cannot decode from zero worker results")
        if len(set(workers)) != len(workers):
            raise ValueError(f"worker indices must be distinct, got {workers}")
        bad = [i for i in workers if not 0 <= i < self.num_workers]
        if bad:
            raise ValueError(
                f"worker index {bad[0]} is out of range for num_workers={self.num_workers}"
            )
        return self._decode_matrix(workers)

    def _build_decode_matrix(self, workers: tuple[int, ...]) -> np.ndarray:
        return berrut_matrix(self.alpha, self.beta[list(workers)])

    def decode(self, y: np.ndarray, available: np.ndarray, *, decode_matrix=None) -> np.ndarray:
        """Estimate f(X_j) for every query from the results of the available workers.

        Parameters
        ----------
        y : array_like of float, shape (G, N, *out)
            Worker results; rows of workers that are not available are ignored (they may hold
            anything, NaN included).
        available : array_like of bool, shape (N,) or (G, N)
            Which workers' results to use, for all groups or per group.
        decode_matrix : callable, optional
            Maps an array of worker indices F to the (K, |F|) matrix that decodes them; by
            default Berrut's interpolant, `BerrutCode.decode_matrix`.

        Returns
        -------
        ndarray of float64, shape (G, K, *out)

        Raises
        ------
        DecodingError
            If a group has no available result.
        """
        if decode_matrix is None:
            decode_matrix = self.decode_matrix
        y = np.asarray(y, dtype=np.float64)
        if y.ndim < 2 or y.shape[1] != self.num_workers:
            raise ValueError(
                f"y must have shape (groups, N={self.num_workers}, ...), got {y.shape}"
            )
        groups = y.shape[0]
        available = np.asarray(available, dtype=bool)
        if available.shape == (self.num_workers,):
            available = np.broadcast_to(available, (groups, self.num_workers))
        if available.shape != (groups, self.num_workers):
            raise ValueError(
                f"available must have shape (N,) = ({self.num_workers},) or (G, N) = "
                f"({groups}, {self.num_workers}), got {available.shape}"
            )

        estimates = np.empty((groups, self.k) + y.shape[2:], dtype=np.float64)
        # Groups that share a set F share one decode matrix: decode each distinct set at once.
        patterns, pattern_of_group = np.unique(available, axis=0, return_inverse=True)
        for index, pattern in enumerate(patterns):
            workers = np.flatnonzero(pattern)
            members = np.flatnonzero(pattern_of_group.ravel() == index)
            if workers.size == 0:
                raise DecodingError(f"group {members[0]} has no worker result to decode from")
            matrix = decode_matrix(workers)
            estimates[members] = np.einsum("kf,gf...->gk...", matrix, y[members][:, workers])
        return estimates

    def exact_queries(self, available: np.ndarray) -> np.ndarray:
        """Mark the queries whose estimate is exact: their node alpha_j equals an available beta_i.

        Parameters
        ----------
        available : array_like of bool, shape (N,) or (G, N)

        Returns
        -------
        ndarray of bool, shape (K,) or (G, K)
        """
        available = np.asarray(available, dtype=bool)
        tolerance = node_tolerance(self.alpha, self.beta)
        coincide = np.abs(self.alpha[:, None] - self.beta[None, :]) <= tolerance  # (K, N)
        return (available[..., None, :] & coincide).any(axis=-1)
