"""Locators of Byzantine results: find the workers whose results are wrong, before decoding.

Every locator rests on one fact. Multiplying the numerator and denominator of the Berrut encoder
by prod_j (z - alpha_j) writes a coded query as u(z) = P_u(z) / D(z), with the known denominator

    D(z) = sum_j (-1)^j prod_{i != j} (z - alpha_i),        degree <= K - 1, no real zeros.

So when the model f is affine, every output class of the results is y(z) = P(z) / D(z) with
deg P <= K - 1, and the E wrong results are the zeros of an error locator Lambda of degree E.
Real models are close to affine near the data, so on real outputs the locators work approximately.

Each code-based locator solves, for every assumed error count e = 1..E, a homogeneous linear
system in Chebyshev bases on [-1, 1]: find a locator l (coefficient vector) such that
w_c * (B_loc l) lies in the column space of B_num for every output class c, where w_c are the
class values at the worker nodes. The null vector comes from an SVD, so no coefficient is fixed
and a wrong worker at z = 0 is found like any other. The variants differ in (B_num, B_loc, w):

=================  =============================================  ===========================
name               system                                         results needed, |F|
=================  =============================================  ===========================
welch              P(z_i) = y_i Q(z_i), deg P, Q <= K+E-1;         2K + 2E - 1
                   per class, suspects chosen by a vote
berrut-rational    the Berrut form: locator Lambda = N / D_t over  K + 2E + 1
                   E+1 auxiliary nodes, numerator of degree K+E
                   over D * D_t; per class, vote
reed-solomon       N(z_i) = y_i D(z_i) Lambda(z_i),                K + 2E
                   deg N <= K+E-1, deg Lambda <= E; per class,
                   vote (real-valued Berlekamp-Welch)
joint              reed-solomon with one Lambda shared by all C    K + E + ceil(E/C) for
                   classes                                        random corruption
subset-search      no locator polynomial: every set of e <= E     K + 2E
                   results is removed in turn, and the set whose
                   removal leaves the best least-squares fit of
                   y = P / D (deg P <= K-1), summed over classes,
                   is the suspect set
median             no code: mean distance to the per-class         max(K + E, 2E + 1)
                   median, over its median across the results
=================  =============================================  ===========================

The number of wrong results is estimated, not assumed to be E: for each e the e most suspect
workers are removed and the honest model of the locator (e = 0) is fitted to the rest. The
smallest e whose relative fit residual is within the tolerance wins, so that honest workers are
kept when no result is wrong. Approximate data that never fits within the tolerance falls back
to the largest e at which removing one more worker shrank the residual by at least `min_gap`.

Real model outputs are not exact rationals, so their honest fit residual is far above the exact
default tolerance. `calibrate_tolerance` measures it on clean outputs of the same code and
returns a quantile to pass as `tolerance`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.polynomial import chebyshev

from .berrut import alternating_signs
from .nodes import query_nodes

__all__ = [
    "DEFAULT_LOCATOR",
    "LOCATORS",
    "LocateResult",
    "Locator",
    "calibrate_tolerance",
    "check_num_workers",
    "denominator_values",
    "locate",
    "required_results",
    "required_workers",
]

# Relative fit residuals below this many float64 eps count as an exact fit (exact data).
# Residuals of exact synthetic data measure below 1e-13 for K <= 16, E <= 4.
_EXACT_TOLERANCE = 2.0**20 * np.finfo(np.float64).eps  # about 2.3e-10

# Median locator: a result whose mean distance to the per-class median is more than this many
# times the median distance of the group's results counts as wrong. Calibrated values (0.99
# quantile of clean scores) measured 1.9 to 8.7 on the Fashion-MNIST RegNetX-002 logits
# (docs/benchmarks-byzantine.md); real models should calibrate their own.
_MEDIAN_TOLERANCE = 6.0

# NOTE: tuned on exact data only. On the logits of a small MLP on scikit-learn's 8x8 digits
# (K=8, E=2, Gaussian sigma=10) the honest fit residual is about 0.1 and each removed wrong result
# shrinks the residual only 1.5-3 times, so every locator found both wrong workers in 40% of
# groups or fewer. Real model outputs need a calibrated tolerance or a stronger candidate search.
_DEFAULT_MIN_GAP = 4.0

# Largest temporary array of the subset search, in bytes. Groups are scored in chunks below it.
_SEARCH_CHUNK_BYTES = 2**26

# Subsets per group that the subset search refits directly after ranking all by the deletion
# formula.
_RESCORED_SUBSETS = 8


@dataclass(frozen=True)
class _System:
    """Matrices of one locator's linear system at the nodes z of the results used.

    numerator : (m, n_num) basis of the honest-model numerator
    locator : (m, n_loc) basis of the locator, evaluated at the nodes
    value_weight : (m,) factor applied to the results before they enter the system
    display_weight : (m,) factor turning |locator @ l| into the locator value of each node
    """

    numerator: np.ndarray
    locator: np.ndarray
    value_weight: np.ndarray
    display_weight: np.ndarray


@dataclass(frozen=True)
class Locator:
    """One locator variant: how many results it needs and the linear system it solves.

    Attributes
    ----------
    name : str
        Registry key in `LOCATORS`.
    description : str
        One line for help texts.
    results_formula, workers_formula : str
        Results and workers needed, as formulas in K, E, S and C, for error messages.
    needed : callable (k, byzantine, num_outputs or None) -> int
        Results needed to locate `byzantine` wrong ones among them.
    system : callable (z, alpha, e) -> _System, or None
        Builder of the linear system; None for the median baseline, which ignores the code.
    joint : bool
        True when one locator is shared by all output classes; False for a per-class vote.
    search : bool
        True for the exhaustive subset search, which needs no `system`.
    """

    name: str
    description: str
    results_formula: str
    workers_formula: str
    needed: Callable[[int, int, int | None], int]
    system: Callable[[np.ndarray, np.ndarray, int], _System] | None
    joint: bool
    search: bool = False


@dataclass(frozen=True)
class LocateResult:
    """Wrong results located in each group.

    Attributes
    ----------
    suspected : tuple of tuple of int, length G
        Worker indices whose results are judged wrong, per group, in increasing order.
    estimated_errors : ndarray of int, shape (G,), values in 0..E
        Number of wrong results estimated per group (the length of each `suspected` entry).
    consistent : ndarray of bool, shape (G,)
        True when the kept results fit the locator's honest model within the tolerance. False
        means the suspects are a best effort: more than E results may be wrong, or the data is
        approximate and the tolerance too tight.
    residuals : ndarray of float, shape (G, E + 1)
        Fit statistic of the honest model after removing the e most suspect workers, for
        e = 0..E: the relative fit residual for the locators with a locator polynomial, the
        largest relative standardized residual for "subset-search", and the distance to the
        per-class median over its median across the results for "median".
    trusted : ndarray of bool, shape (G, N)
        Available workers that are not suspected: the set F to decode from.
    """

    suspected: tuple[tuple[int, ...], ...]
    estimated_errors: np.ndarray
    consistent: np.ndarray
    residuals: np.ndarray
    trusted: np.ndarray


def denominator_values(alpha: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Evaluate D(z) = sum_j (-1)^j prod_{i != j} (z - alpha_i), the encoder's denominator.

    Parameters
    ----------
    alpha : array_like of float, shape (K,)
        Distinct nodes; the sign follows each node's position in decreasing order.
    z : array_like of float, shape (m,)

    Returns
    -------
    ndarray of float64, shape (m,)
        D has no real zeros, because D(z) = prod_i (z - alpha_i) * sum_j (-1)^j / (z - alpha_j)
        and Berrut's denominator has no real zeros.
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    differences = z[:, None] - alpha[None, :]  # (m, K)
    products = np.empty_like(differences)
    for j in range(alpha.size):
        products[:, j] = np.prod(np.delete(differences, j, axis=1), axis=1)
    return products @ alternating_signs(alpha)


# ---------------------------------------------------------------------------------------------
# The variants: each builds its linear system for the results at nodes z, assuming e errors.


def _welch_system(z: np.ndarray, alpha: np.ndarray, e: int) -> _System:
    # P(z_i) - y_i Q(z_i) = 0 with deg P, Q <= K+e-1. Q = D * Lambda, so dividing |Q| by the
    # known |D| gives the locator values; D has no real zeros.
    basis = chebyshev.chebvander(z, alpha.size + e - 1)
    ones = np.ones(z.size)
    return _System(basis, basis, ones, 1.0 / np.abs(denominator_values(alpha, z)))


def _berrut_rational_system(z: np.ndarray, alpha: np.ndarray, e: int) -> _System:
    # Lambda = N / D_t is a Berrut-form rational over E+1 auxiliary nodes t (pole-free), and
    # Lambda * y = M / (D * D_t) with deg M <= K+e: one numerator degree more than the true
    # K+e-1, which is the price of the partial-fraction form and costs one extra result.
    auxiliary = query_nodes(e + 1)
    auxiliary_denominator = denominator_values(auxiliary, z)
    numerator = chebyshev.chebvander(z, alpha.size + e)
    numerator /= (denominator_values(alpha, z) * auxiliary_denominator)[:, None]
    locator = chebyshev.chebvander(z, e) / auxiliary_denominator[:, None]
    ones = np.ones(z.size)
    return _System(numerator, locator, ones, ones)


def _reed_solomon_system(z: np.ndarray, alpha: np.ndarray, e: int) -> _System:
    # y_i D(z_i) are evaluations of a polynomial of degree K-1 at honest workers, so the
    # real-valued Berlekamp-Welch key equation N(z_i) = y_i D(z_i) Lambda(z_i) applies.
    numerator = chebyshev.chebvander(z, alpha.size + e - 1)
    locator = chebyshev.chebvander(z, e)
    return _System(numerator, locator, denominator_values(alpha, z), np.ones(z.size))


def _results_for_joint(k: int, byzantine: int, num_outputs: int | None) -> int:
    if num_outputs is None:
        return k + 2 * byzantine  # the Reed-Solomon count is valid against any corruption
    return k + byzantine + math.ceil(byzantine / num_outputs)


LOCATORS: dict[str, Locator] = {
    locator.name: locator
    for locator in (
        Locator(
            "welch",
            "Welch-style rational locator per class with a vote (the ApproxIFER paper's)",
            "2*K+2*E-1",
            "2*K+2*E+S-1",
            lambda k, byzantine, num_outputs: 2 * k + 2 * byzantine - 1,
            _welch_system,
            joint=False,
        ),
        Locator(
            "berrut-rational",
            "rational locator on the Berrut form per class with a vote",
            "K+2*E+1",
            "K+2*E+S+1",
            lambda k, byzantine, num_outputs: k + 2 * byzantine + 1,
            _berrut_rational_system,
            joint=False,
        ),
        Locator(
            "reed-solomon",
            "real Berlekamp-Welch on y * D per class with a vote",
            "K+2*E",
            "K+2*E+S",
            lambda k, byzantine, num_outputs: k + 2 * byzantine,
            _reed_solomon_system,
            joint=False,
        ),
        Locator(
            "joint",
            "real Berlekamp-Welch on y * D with one locator shared by all classes",
            "K+E+ceil(E/C)",
            "K+E+ceil(E/C)+S",
            _results_for_joint,
            _reed_solomon_system,
            joint=True,
        ),
        Locator(
            "subset-search",
            "exhaustive search over sets of up to E results for the best fit of the rest",
            "K+2*E",
            "K+2*E+S",
            lambda k, byzantine, num_outputs: k + 2 * byzantine,
            None,
            joint=True,
            search=True,
        ),
        Locator(
            "median",
            "baseline ignoring the code: distance to the per-class median",
            "max(K+E, 2*E+1)",
            "max(K+E, 2*E+1)+S",
            lambda k, byzantine, num_outputs: max(k + byzantine, 2 * byzantine + 1),
            None,
            joint=False,
        ),
    )
}


# The locator used when none is named. On the logits of three deep classifiers (Fashion-MNIST
# RegNetX-002 and ResNet-18, MNIST ResNet-18; default "paired" nodes, Gaussian noise sigma 10,
# benchmarks/byzantine.py) only "median" found every wrong worker in 99% of trials for E = 1
# to 3 and K = 8 and 12 with fewer workers than the paper's 2K + 2E - 1. "subset-search" and
# "welch" did so in some cells only, mostly E = 1. The median's blind spot is wrong results
# that look honest (permuted classes, a constant): see docs/benchmarks-byzantine.md.
DEFAULT_LOCATOR = "median"


# ---------------------------------------------------------------------------------------------
# Validation


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {name}={value}")
    return int(value)


def _get_locator(locator: str | Locator) -> Locator:
    if isinstance(locator, Locator):
        return locator
    if locator not in LOCATORS:
        choices = ", ".join(repr(name) for name in LOCATORS)
        raise ValueError(f"unknown locator {locator!r}; choose one of {choices}")
    return LOCATORS[locator]


def required_results(
    locator: str | Locator, k: int, byzantine: int, *, num_outputs: int | None = None
) -> int:
    """Return the number of results from which `locator` finds up to `byzantine` wrong ones.

    Parameters
    ----------
    locator : str or Locator
        A name in `LOCATORS`.
    k : int, >= 1
        Queries per group, K.
    byzantine : int, >= 0
        Wrong results tolerated, E. With E = 0 nothing is located and K results suffice.
    num_outputs : int, optional
        Output classes C. Only the "joint" locator uses it, and only against random corruption;
        without it "joint" needs the Reed-Solomon count K + 2E, which is valid against any.

    Returns
    -------
    int
    """
    entry = _get_locator(locator)
    k = _check_count("k", k, 1)
    byzantine = _check_count("byzantine", byzantine, 0)
    if num_outputs is not None:
        num_outputs = _check_count("num_outputs", num_outputs, 1)
    if byzantine == 0:
        return k
    return entry.needed(k, byzantine, num_outputs)


def required_workers(
    locator: str | Locator,
    k: int,
    stragglers: int,
    byzantine: int,
    *,
    num_outputs: int | None = None,
) -> int:
    """Return the number of workers N for S stragglers and E wrong results: results needed + S.

    For example N = 2K + 2E + S - 1 for "welch" and K + 2E + S for "reed-solomon".
    """
    stragglers = _check_count("stragglers", stragglers, 0)
    return required_results(locator, k, byzantine, num_outputs=num_outputs) + stragglers


def check_num_workers(
    locator: str | Locator,
    k: int,
    stragglers: int,
    byzantine: int,
    num_workers: int,
    *,
    num_outputs: int | None = None,
) -> int:
    """Validate a user-given worker count against `required_workers` and return it.

    Raises
    ------
    ValueError
        If num_workers is too small; the message states the inequality, for example
        "byzantine=3 needs at least 2*K+2*E+S-1 = 21 workers, got num_workers=17."
    """
    entry = _get_locator(locator)
    num_workers = _check_count("num_workers", num_workers, 1)
    needed = required_workers(entry, k, stragglers, byzantine, num_outputs=num_outputs)
    if num_workers < needed:
        formula = "K+S" if byzantine == 0 else entry.workers_formula
        raise ValueError(
            f"byzantine={byzantine} needs at least {formula} = {needed} workers with the "
            f"{entry.name!r} locator (K={k}, S={stragglers}), got num_workers={num_workers}; "
            f"raise num_workers or lower byzantine or stragglers"
        )
    return num_workers


# ---------------------------------------------------------------------------------------------
# The shared core


def _rows_by_pattern(mask: np.ndarray):
    """Yield (pattern, rows) for each distinct row of a boolean (b, m) mask."""
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for index, pattern in enumerate(patterns):
        yield pattern, np.flatnonzero(inverse == index)


def _orthogonal_complement(basis: np.ndarray) -> np.ndarray:
    """Return an orthonormal (m, m - n) basis of the complement of the columns of `basis`."""
    m, n = basis.shape
    if m <= n:
        return np.zeros((m, 0))
    q, _ = np.linalg.qr(basis, mode="complete")
    return q[:, n:]


def _smallest_singular(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the right singular vector and value of the smallest singular value of each matrix.

    matrices has shape (b, r, n). With fewer rows than columns the null space is not trivial
    and the singular value is 0; zero rows are appended so that the SVD returns a null vector.
    """
    b, r, n = matrices.shape
    if r < n:
        matrices = np.concatenate([matrices, np.zeros((b, n - r, n))], axis=1)
    # The reduced SVD returns the full (n, n) vh because rows >= n here; the full one would
    # also build an (r, r) U for nothing, which is slow for the stacked per-class systems.
    _, singular_values, vh = np.linalg.svd(matrices, full_matrices=False)
    return vh[:, -1, :], singular_values[:, -1]


def _normalize_classes(values: np.ndarray) -> np.ndarray:
    """Scale each class of (b, m, c) values to a maximum absolute value of 1 (zero classes stay)."""
    peak = np.max(np.abs(values), axis=1, keepdims=True)
    return values / np.where(peak > 0, peak, 1.0)


def _solve(system: _System, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Find the locator of each batch entry from values (b, m, c) that share one system.

    Returns the locator values at the m nodes, shape (b, m), and the relative residual of the
    null vector, shape (b,): its singular value over the Frobenius norm of the unprojected
    system, so 0 for data that fit exactly.
    """
    batch, m, classes = values.shape
    weighted = _normalize_classes(values * system.value_weight[None, :, None])
    products = weighted[..., None] * system.locator[None, :, None, :]  # (b, m, c, n_loc)

    # w_c * (B_loc l) lies in the span of B_num exactly when its projection onto the
    # complement of that span vanishes: stack the projections of all c classes.
    complement = _orthogonal_complement(system.numerator)  # (m, r)
    projected = np.einsum("mr,bmcn->bcrn", complement, products)
    projected = projected.reshape(batch, classes * complement.shape[1], products.shape[3])
    vectors, singular = _smallest_singular(projected)

    scale = np.sqrt(np.sum(products**2, axis=(1, 2, 3)))
    residual = np.divide(singular, scale, out=np.zeros(batch), where=scale > 0)
    locator_values = np.abs(vectors @ system.locator.T) * system.display_weight[None, :]
    return locator_values, residual


def _honest_residual(entry: Locator, z, alpha, values: np.ndarray) -> np.ndarray:
    """Return the worst relative residual over classes of the honest model (e = 0), shape (b,)."""
    batch, m, classes = values.shape
    per_class = values.transpose(0, 2, 1).reshape(batch * classes, m, 1)
    _, residual = _solve(entry.system(z, alpha, 0), per_class)
    return residual.reshape(batch, classes).max(axis=1)


def _honest_statistic(entry: Locator, z, alpha, values: np.ndarray) -> np.ndarray:
    """Return the locator's fit statistic of the honest model on values (b, m, c), shape (b,)."""
    if entry.search:
        return _standardized_statistic(z, alpha, values)
    if entry.system is None:
        return _median_residuals(values, 0)[1][:, 0]
    return _honest_residual(entry, z, alpha, values)


def _residuals_without(entry: Locator, z, alpha, values, candidates) -> np.ndarray:
    """Return the honest-model statistic after removing each candidate set, shape (b, E + 1).

    candidates[e] contains the positions (into z) of the e workers to remove, shape (b, e).
    """
    batch, m, _ = values.shape
    residuals = np.empty((batch, len(candidates)))
    for e, positions in enumerate(candidates):
        if entry.search:
            residuals[:, e] = _standardized_statistic_without(z, alpha, values, positions)
            continue
        keep = np.ones((batch, m), dtype=bool)
        np.put_along_axis(keep, positions, False, axis=1)
        for pattern, rows in _rows_by_pattern(keep):
            residuals[rows, e] = _honest_statistic(
                entry, z[pattern], alpha, values[rows][:, pattern]
            )
    return residuals


# ---------------------------------------------------------------------------------------------
# Subset search: least squares on the honest model y = P / D, no locator polynomial


def _hat_matrix(z: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Return the (m, m) least-squares projection onto y = P / D with deg P <= K - 1 at nodes z."""
    basis = chebyshev.chebvander(z, alpha.size - 1) / denominator_values(alpha, z)[:, None]
    q, _ = np.linalg.qr(basis)
    return q @ q.T


def _standardized_statistic(z, alpha, values: np.ndarray) -> np.ndarray:
    """Return the relative standardized residual of the honest model on values (b, m, c), shape (b,).

    With r the residual of the least-squares fit to all m results and h_ii the leverage of
    worker i, r_i / sqrt(1 - h_ii) has the same variance at every worker when the honest error
    has. The statistic is the largest root-mean-square of it over the classes among the
    workers, divided by the root-mean-square of the values. With m <= K every fit is exact and
    nothing can be checked, so the statistic is 0.
    """
    batch, m, _ = values.shape
    if m <= alpha.size:
        return np.zeros(batch)
    hat = _hat_matrix(z, alpha)
    residual = values - np.einsum("ij,bjc->bic", hat, values)
    complement = 1.0 - np.diag(hat)
    # A worker of leverage 1 is not predicted by the others at all; it cannot be checked.
    checkable = complement > _EXACT_TOLERANCE
    standardized = np.divide(
        residual,
        np.sqrt(np.maximum(complement, 0.0))[None, :, None],
        out=np.zeros_like(residual),
        where=checkable[None, :, None],
    )
    worst = np.sqrt(np.max(np.mean(standardized**2, axis=2), axis=1))
    scale = np.sqrt(np.mean(values**2, axis=(1, 2)))
    return np.divide(worst, scale, out=np.zeros(batch), where=scale > 0)


def _standardized_statistic_without(z, alpha, values, removed: np.ndarray) -> np.ndarray:
    """Return `_standardized_statistic` of each batch entry without its removed positions.

    removed has shape (b, e); one batched QR serves all entries, whatever set each removes.
    """
    batch, m, _ = values.shape
    size = removed.shape[1]
    if m - size <= alpha.size:
        return np.zeros(batch)
    keep = np.ones((batch, m), dtype=bool)
    np.put_along_axis(keep, removed, False, axis=1)
    kept = np.nonzero(keep)[1].reshape(batch, m - size)  # (b, m - e) positions

    basis = chebyshev.chebvander(z, alpha.size - 1) / denominator_values(alpha, z)[:, None]
    q, _ = np.linalg.qr(basis[kept])  # (b, m - e, K)
    kept_values = np.take_along_axis(values, kept[..., None], axis=1)  # (b, m - e, c)
    residual = kept_values - q @ (np.swapaxes(q, -1, -2) @ kept_values)
    complement = 1.0 - np.sum(q**2, axis=2)  # 1 - h_ii, shape (b, m - e)
    checkable = complement > _EXACT_TOLERANCE
    standardized = np.divide(
        residual,
        np.sqrt(np.maximum(complement, 0.0))[..., None],
        out=np.zeros_like(residual),
        where=checkable[..., None],
    )
    worst = np.sqrt(np.max(np.mean(standardized**2, axis=2), axis=1))
    scale = np.sqrt(np.mean(kept_values**2, axis=(1, 2)))
    return np.divide(worst, scale, out=np.zeros(batch), where=scale > 0)


def _search_subsets(z, alpha, values: np.ndarray, byzantine: int) -> list[np.ndarray]:
    """Return the candidates (a list over e = 0..E of (b, e) positions into z) of the search.

    For each e the candidate set is the one, among all sets of e results, whose removal leaves
    the smallest residual sum of squares of the honest model, summed over the classes. The
    deletion formula of least squares scores every set from one fit to all m results:

        RSS without S = RSS - sum_c r_{S,c}^T (I - H_SS)^{-1} r_{S,c},

    with r the residual of that fit and H its hat matrix. There are C(m, e) sets: about 10^4
    for m = 40 and e = 3.
    """
    batch, m, classes = values.shape
    hat = _hat_matrix(z, alpha)
    residual = values - np.einsum("ij,bjc->bic", hat, values)  # (b, m, c)
    complement = np.eye(m) - hat

    candidates = [np.zeros((batch, 0), dtype=np.int64)]
    for e in range(1, byzantine + 1):
        size = min(e, m)
        subsets = np.array(list(itertools.combinations(range(m), size)), dtype=np.int64)
        subsets = subsets.reshape(-1, size)  # (s, size)
        blocks = complement[subsets[:, :, None], subsets[:, None, :]]  # (s, size, size)
        # Singular when the kept results number fewer than K; the pseudo-inverse then scores
        # the removal by the part of the residual it can explain.
        inverse = np.linalg.pinv(blocks, hermitian=True)

        shortlist = min(_RESCORED_SUBSETS, len(subsets))
        best = np.empty((batch, shortlist), dtype=np.int64)
        step = max(1, _SEARCH_CHUNK_BYTES // (8 * subsets.size * classes))
        for start in range(0, batch, step):
            removed = residual[start : start + step][:, subsets, :]  # (b', s, size, c)
            reduction = np.einsum("bsic,sij,bsjc->bs", removed, inverse, removed)
            order = np.argpartition(-reduction, shortlist - 1, axis=1)
            best[start : start + step] = order[:, :shortlist]

        # The formula loses digits when the kept results barely outnumber K, because I - H_SS
        # is then nearly singular: refit the shortlisted removals directly and keep the best.
        kept_rss = _kept_sum_of_squares(z, alpha, values, subsets[best])  # (b, shortlist)
        choice = np.argmin(kept_rss, axis=1)
        candidates.append(subsets[best[np.arange(batch), choice]])
    return candidates


def _kept_sum_of_squares(z, alpha, values, removed: np.ndarray) -> np.ndarray:
    """Return the residual sum of squares of the honest fit without each removed set.

    removed has shape (b, t, e): t sets of e positions per batch entry; returns (b, t).
    """
    batch, m, classes = values.shape
    _, sets, size = removed.shape
    keep = np.ones((batch, sets, m), dtype=bool)
    np.put_along_axis(keep, removed, False, axis=2)
    kept = np.nonzero(keep)[2].reshape(batch, sets, m - size)  # (b, t, m - e) positions

    basis = chebyshev.chebvander(z, alpha.size - 1) / denominator_values(alpha, z)[:, None]
    q, _ = np.linalg.qr(basis[kept])  # (b, t, m - e, min(m - e, K))
    kept_values = np.take_along_axis(values[:, None], kept[..., None], axis=2)  # (b, t, m-e, c)
    fitted = q @ (np.swapaxes(q, -1, -2) @ kept_values)
    return np.sum((kept_values - fitted) ** 2, axis=(2, 3))


def _locate_shared(entry: Locator, z, alpha, values, byzantine):
    """Locate with one locator shared by all classes of values (b, m, c).

    Returns the candidates (a list over e = 0..E of (b, e) positions into z, the e smallest
    locator values of the degree-e locator) and their residuals (b, E + 1).
    """
    batch = values.shape[0]
    candidates = [np.zeros((batch, 0), dtype=np.int64)]
    for e in range(1, byzantine + 1):
        locator_values, _ = _solve(entry.system(z, alpha, e), values)
        candidates.append(np.argsort(locator_values, axis=1, kind="stable")[:, :e])
    return candidates, _residuals_without(entry, z, alpha, values, candidates)


def _locate_by_vote(entry: Locator, z, alpha, values, byzantine, tolerance, min_gap):
    """Locate class by class, then vote; same returns as `_locate_shared`.

    Each class estimates its own error count and flags that many workers, so a class whose
    results fit without errors casts no vote. The workers with the most votes are the
    candidates; ties go to the larger residual drop in the classes that flagged them.
    """
    batch, m, classes = values.shape
    per_class = values.transpose(0, 2, 1).reshape(batch * classes, m, 1)
    class_candidates, class_residuals = _locate_shared(entry, z, alpha, per_class, byzantine)
    class_counts, _ = _estimate_errors(class_residuals, tolerance, min_gap)

    votes = np.zeros((batch * classes, m))
    drop = np.zeros((batch * classes, m))
    for count in range(1, byzantine + 1):
        rows = np.flatnonzero(class_counts == count)
        flagged = class_candidates[count][rows]  # (rows, count)
        votes[rows] = _flag(m, flagged)
        gain = np.maximum(class_residuals[rows, 0] - class_residuals[rows, count], 0.0)
        drop[rows] = votes[rows] * gain[:, None]
    votes = votes.reshape(batch, classes, m).sum(axis=1)
    drop = drop.reshape(batch, classes, m).sum(axis=1)

    order = np.lexsort((-drop, -votes), axis=1)
    candidates = [order[:, :e] for e in range(byzantine + 1)]
    return candidates, _residuals_without(entry, z, alpha, values, candidates)


def _flag(m: int, positions: np.ndarray) -> np.ndarray:
    """Return a (rows, m) 0/1 array with ones at the given (rows, count) positions."""
    flags = np.zeros((positions.shape[0], m))
    np.put_along_axis(flags, positions, 1.0, axis=1)
    return flags


def _median_residuals(values: np.ndarray, byzantine: int):
    """Rank results by their distance to the per-class median (ignores the code).

    A result's distance is its mean absolute deviation from the per-class median over the
    classes. Its score is that distance over the median distance of all results in the group.
    The residual after removing e results is the largest remaining score.

    The scale is one common distance, not a per-class one. An honest result often lies far out
    in the one class of its own query, and per-class median absolute deviations would magnify
    that when few queries of the group share the class. A wrong result differs in most classes.
    """
    median = np.median(values, axis=1, keepdims=True)
    distance = np.mean(np.abs(values - median), axis=2)  # (b, m)
    typical = np.median(distance, axis=1, keepdims=True)
    magnitude = np.max(np.abs(values), axis=(1, 2))[:, None]
    floor = np.finfo(np.float64).eps * np.maximum(1.0, magnitude)
    score = distance / np.maximum(typical, floor)  # (b, m)

    order = np.argsort(-score, axis=1, kind="stable")
    ranked = np.take_along_axis(score, order, axis=1)
    candidates = [order[:, :e] for e in range(byzantine + 1)]
    return candidates, ranked[:, : byzantine + 1]


def _estimate_errors(
    residuals: np.ndarray, tolerance: float, min_gap: float | None
):
    """Choose the error count per row of residuals (b, E + 1); return (counts, consistent).

    The smallest e whose residual is within the tolerance wins. Rows where none is fall back to
    the largest e at which removing the e-th suspect divided the residual by at least min_gap,
    or to 0; with min_gap None they fall back to E, the most suspects allowed.
    """
    fits = residuals <= tolerance
    consistent = fits.any(axis=1)
    first_fit = np.argmax(fits, axis=1)
    byzantine = residuals.shape[1] - 1
    if min_gap is None:
        return np.where(consistent, first_fit, byzantine), consistent

    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = residuals[:, :-1] / residuals[:, 1:]  # (b, E): ratio for e = 1..E
    drops = ratios >= min_gap
    last_drop = np.where(drops.any(axis=1), byzantine - np.argmax(drops[:, ::-1], axis=1), 0)
    return np.where(consistent, first_fit, last_drop), consistent


def _nodes_of(code) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(code, tuple) and len(code) == 2:
        alpha, beta = code
    elif hasattr(code, "alpha") and hasattr(code, "beta"):
        alpha, beta = code.alpha, code.beta
    else:
        raise TypeError(
            f"code must be a BerrutCode or a pair (alpha, beta) of node arrays, "
            f"got {type(code).__name__}"
        )
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.ndim != 1 or beta.ndim != 1 or alpha.size == 0 or beta.size == 0:
        raise ValueError(
            f"alpha and beta must be non-empty 1-D arrays, got shapes {alpha.shape} and "
            f"{beta.shape}"
        )
    return alpha, beta


def _check_results(y, available, num_workers: int):
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, :, None]
    if y.ndim != 3 or y.shape[1] != num_workers:
        raise ValueError(
            f"y must have shape (groups, N={num_workers}, classes) or (groups, N), "
            f"got {y.shape}"
        )
    groups = y.shape[0]
    available = np.asarray(available)
    if available.dtype != bool:
        raise TypeError(f"available must be a boolean mask, got dtype {available.dtype}")
    if available.shape == (num_workers,):
        available = np.broadcast_to(available, (groups, num_workers))
    if available.shape != (groups, num_workers):
        raise ValueError(
            f"available must have shape (N,) = ({num_workers},) or (G, N) = "
            f"({groups}, {num_workers}), got {available.shape}"
        )
    bad = available & ~np.all(np.isfinite(y), axis=2)
    if bad.any():
        group, worker = np.argwhere(bad)[0]
        raise ValueError(
            f"the result of available worker {worker} in group {group} is not finite; "
            f"mark non-finite results as unavailable (stragglers) before locating"
        )
    return y, available


def locate(
    code,
    y: np.ndarray,
    available: np.ndarray,
    byzantine: int,
    locator: str | Locator = "reed-solomon",
    *,
    tolerance: float | None = None,
    min_gap: float = _DEFAULT_MIN_GAP,
) -> LocateResult:
    """Locate up to E wrong results per group, among the available workers only.

    Parameters
    ----------
    code : BerrutCode or tuple (alpha, beta)
        The code whose query nodes alpha (K,) and worker nodes beta (N,) produced the results.
    y : array_like of float, shape (G, N, C) or (G, N)
        Worker results; rows of unavailable workers are ignored and may hold anything.
    available : array_like of bool, shape (N,) or (G, N)
        Workers whose results arrived; stragglers are never suspected and never vote.
    byzantine : int, >= 0
        Maximum number of wrong results to locate per group, E.
    locator : str or Locator
        A name in `LOCATORS`.
    tolerance : float, optional
        Fit residual within which the kept results count as honest. For the code-based
        locators it is relative (residual over the norm of the data). The default, about
        2.3e-10, suits exact data. Approximate data such as real model outputs needs a
        threshold above its own interpolation error, which `calibrate_tolerance` measures on
        clean outputs. For "subset-search" it bounds the largest standardized residual r_i /
        sqrt(1 - h_ii) of a least-squares fit, relative to the root-mean-square of the results
        (same default). For "median" it bounds a result's mean distance to the per-class
        median over the median of that distance across the results, by default 6.
    min_gap : float, > 1
        Fallback for groups that never fit within the tolerance: the error count is the largest
        e at which removing the e-th suspect divided the residual by at least `min_gap`.
        "subset-search" ignores it and falls back to E suspects.

    Returns
    -------
    LocateResult

    Warns
    -----
    UserWarning
        If a group has fewer available results than `required_results`: the suspects found
        then need not be the wrong workers.

    Notes
    -----
    For every e = 1..E the locator proposes its e most suspect workers; the honest model of the
    locator is fitted to the remaining results and the smallest e with a residual within the
    tolerance is taken. With exact data and at least `required_results` results, the true
    error count a <= E is the smallest such e and the locator at degree a is unique, so every
    wrong result is found and no honest one is dropped.
    """
    entry = _get_locator(locator)
    alpha, beta = _nodes_of(code)
    byzantine = _check_count("byzantine", byzantine, 0)
    y, available = _check_results(y, available, beta.size)
    if not (isinstance(min_gap, (int, float)) and min_gap > 1):
        raise ValueError(f"min_gap must be a number greater than 1, got min_gap={min_gap!r}")
    if tolerance is None:
        median = entry.system is None and not entry.search
        tolerance = _MEDIAN_TOLERANCE if median else _EXACT_TOLERANCE
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be non-negative, got tolerance={tolerance!r}")

    groups, num_workers, classes = y.shape
    estimated = np.zeros(groups, dtype=np.int64)
    consistent = np.ones(groups, dtype=bool)
    residuals = np.full((groups, byzantine + 1), np.nan)
    suspected: list[tuple[int, ...]] = [()] * groups
    if byzantine == 0:
        return LocateResult(tuple(suspected), estimated, consistent, residuals, available.copy())

    needed = required_results(entry, alpha.size, byzantine, num_outputs=classes)
    fewest = int(available.sum(axis=1).min())
    if fewest < needed:
        warnings.warn(
            f"the {entry.name!r} locator needs {entry.results_formula} = {needed} results to "
            f"locate byzantine={byzantine} wrong ones (K={alpha.size}, C={classes}), but a group "
            f"has only {fewest}; the suspects may be wrong. Add workers or wait for more results",
            stacklevel=2,
        )

    for pattern, rows in _rows_by_pattern(available):
        workers = np.flatnonzero(pattern)
        values = y[rows][:, workers]  # (b, m, C)
        if entry.search:
            candidates = _search_subsets(beta[workers], alpha, values, byzantine)
            pattern_residuals = _residuals_without(
                entry, beta[workers], alpha, values, candidates
            )
        elif entry.system is None:
            candidates, pattern_residuals = _median_residuals(values, byzantine)
        elif entry.joint:
            candidates, pattern_residuals = _locate_shared(
                entry, beta[workers], alpha, values, byzantine
            )
        else:
            candidates, pattern_residuals = _locate_by_vote(
                entry, beta[workers], alpha, values, byzantine, tolerance, min_gap
            )
        # The subset search compares every set, so a group that never fits within the
        # tolerance has more wrong results than e < E explains: drop the E best suspects.
        fallback_gap = None if entry.search else min_gap
        counts, fits = _estimate_errors(pattern_residuals, tolerance, fallback_gap)

        residuals[rows] = pattern_residuals
        estimated[rows] = counts
        consistent[rows] = fits
        for index, (row, count) in enumerate(zip(rows, counts)):
            positions = candidates[count][index]
            suspected[row] = tuple(sorted(int(workers[p]) for p in positions))

    trusted = available.copy()
    for group, workers in enumerate(suspected):
        trusted[group, list(workers)] = False
    return LocateResult(tuple(suspected), estimated, consistent, residuals, trusted)


def calibrate_tolerance(
    code,
    clean_outputs: np.ndarray,
    locator: str | Locator = DEFAULT_LOCATOR,
    *,
    byzantine: int = 0,
    available: np.ndarray | None = None,
    quantile: float = 0.99,
    rng: int | np.random.Generator | None = None,
) -> float:
    """Measure a locator's honest fit statistic on clean outputs and return its quantile.

    Pass the result as `tolerance` to `locate` (or as `locator_tolerance` to the session) for
    the same model, code and locator. Outputs of a real model are not exact rationals, so the
    exact default tolerance counts every group as inconsistent.

    Parameters
    ----------
    code : BerrutCode or tuple (alpha, beta)
        The code of the outputs.
    clean_outputs : array_like of float, shape (G, N, C) or (G, N)
        Model outputs on coded queries with no wrong result, from data held out from the data
        to be served (their statistic would otherwise set its own threshold).
    locator : str or Locator
        A name in `LOCATORS`.
    byzantine : int, >= 0
        Random available workers removed per group before measuring. Under attack the locator
        judges the fit after removing its suspects, which leaves fewer results and a larger
        statistic. Removing E random honest results reproduces that, so the tolerance errs
        towards keeping honest workers.
    available : array_like of bool, shape (N,) or (G, N), optional
        Workers whose results count; all by default.
    quantile : float in (0, 1]
        Quantile of the per-group statistic to return. The share of clean groups above it is
        about 1 - quantile: those groups lose honest workers when `locate` runs with E > 0.
    rng : int or Generator, optional
        Source of the removed workers.

    Returns
    -------
    float
        The tolerance, in the units of `LocateResult.residuals`.
    """
    entry = _get_locator(locator)
    alpha, beta = _nodes_of(code)
    byzantine = _check_count("byzantine", byzantine, 0)
    if available is None:
        available = np.ones(beta.size, dtype=bool)
    y, available = _check_results(clean_outputs, available, beta.size)
    if not (isinstance(quantile, (int, float)) and 0 < quantile <= 1):
        raise ValueError(f"quantile must be a number in (0, 1], got quantile={quantile!r}")
    rng = np.random.default_rng(rng)

    kept = available.copy()
    for group in range(y.shape[0]):
        workers = np.flatnonzero(kept[group])
        if workers.size <= byzantine:
            raise ValueError(
                f"group {group} has {workers.size} available results, too few to remove "
                f"byzantine={byzantine} of them; lower byzantine or mark more results available"
            )
        kept[group, rng.choice(workers, byzantine, replace=False)] = False

    statistic = np.empty(y.shape[0])
    for pattern, rows in _rows_by_pattern(kept):
        statistic[rows] = _honest_statistic(entry, beta[pattern], alpha, y[rows][:, pattern])
    return float(np.quantile(statistic, quantile))
