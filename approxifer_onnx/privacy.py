"""Differential privacy for coded inference: a hardened Laplace mechanism and its accountant.

Two placements are offered (`PRIVACY_PLACEMENTS`):

- ``"outputs"``: each worker's prediction vector is clipped to ``[lower, upper]`` and noised before
  it is released. This protects the queries against whoever sees the released predictions.
- ``"queries"``: each coded query is clipped to the input range and noised before it leaves the
  client. This protects the queries against curious workers.

`LaplaceMechanism` adds noise with scale b = sensitivity / epsilon, where sensitivity is the L1
sensitivity of one released vector. Its sampler is a discrete Laplace on a power-of-two grid,
drawn with integer arithmetic only, so the float64 low-bit attack on textbook Laplace sampling
(Mironov, "On significance of the least significant bits for differential privacy", CCS 2012)
does not apply. `PrivacyAccountant` sums epsilon over released vectors (basic composition).
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from approxifer_onnx.exceptions import ApproxiferError, PrivacyWarning

__all__ = [
    "PRIVACY_PLACEMENTS",
    "LaplaceMechanism",
    "NoiseParameters",
    "PrivacyAccountant",
    "PrivacyPolicy",
    "PrivacyBudgetExceededError",
    "apply_to_outputs",
    "apply_to_queries",
    "check_bounds",
    "check_epsilon",
    "check_placement",
    "check_sensitivity",
]

logger = logging.getLogger(__name__)

PRIVACY_PLACEMENTS = ("outputs", "queries")

# The grid step is at most 2**-GRID_BITS times both the noise scale and the per-value sensitivity,
# so rounding to the grid changes the noise scale by a factor of at most 1 + 2**-GRID_BITS.
GRID_BITS = 12

# Epsilon is replaced by the largest fraction p / q <= epsilon with q a power of two chosen so that
# p >= 2**EPSILON_BITS when int64 allows, so the sampler works with integers and gives up less than
# a relative 2**-20 of epsilon.
EPSILON_BITS = 20

# The discrete sampler draws integers below t = sensitivity_steps * q. Keeping t below 2**48 leaves
# room in int64 for U + t * V, where V >= 2**14 has probability below exp(-16000).
MAX_SAMPLER_DENOMINATOR = 2**48

# Relative excess over the budget that PrivacyAccountant tolerates, so that a float sum such as
# 0.1 + 0.1 + 0.1 does not reject a release that fits a budget of 0.3.
BUDGET_RELATIVE_TOLERANCE = 1e-9


class PrivacyBudgetExceededError(ApproxiferError, RuntimeError):
    """A release would make the spent epsilon exceed the accountant's budget."""


# --- validation ----------------------------------------------------------------------------------


def _check_real(name: str, value) -> float:
    # bool is an int subclass, but epsilon=True is a mistake, never a number
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {name}={value!r} of type {type(value).__name__}")
    return float(value)


def check_epsilon(epsilon) -> float:
    """Validate the privacy parameter epsilon and return it as a float.

    Parameters
    ----------
    epsilon : float in (0, inf)

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If epsilon is not a real number.
    ValueError
        If epsilon is not positive and finite.
    """
    value = _check_real("epsilon", epsilon)
    if not (0.0 < value < math.inf):
        raise ValueError(
            f"epsilon must be in (0, inf), got epsilon={epsilon!r}; "
            "pass a positive finite epsilon (smaller means more noise)"
        )
    return value


def check_sensitivity(sensitivity) -> float:
    """Validate an L1 sensitivity and return it as a float.

    Parameters
    ----------
    sensitivity : float in [0, inf)

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If sensitivity is not a real number.
    ValueError
        If sensitivity is negative or not finite.
    """
    value = _check_real("sensitivity", sensitivity)
    if not (0.0 <= value < math.inf):
        raise ValueError(
            f"sensitivity must be in [0, inf), got sensitivity={sensitivity!r}; "
            "pass the largest L1 distance between released vectors of neighbouring inputs"
        )
    return value


def check_bounds(lower, upper) -> tuple[float, float]:
    """Validate clipping bounds and return them as floats.

    Parameters
    ----------
    lower, upper : float
        Finite, with lower < upper.

    Returns
    -------
    (float, float)

    Raises
    ------
    TypeError
        If a bound is not a real number.
    ValueError
        If a bound is not finite or lower >= upper.
    """
    low = _check_real("lower", lower)
    high = _check_real("upper", upper)
    for name, value in (("lower", low), ("upper", high)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be in (-inf, inf), got {name}={value!r}; pass a finite bound")
    if not low < high:
        raise ValueError(
            f"lower must be less than upper, got lower={lower!r} and upper={upper!r}; "
            "pass the interval that the released values are clipped to"
        )
    return low, high


def check_placement(placement) -> str:
    """Validate a privacy placement and return it.

    Parameters
    ----------
    placement : {"outputs", "queries"}

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If placement is not one of `PRIVACY_PLACEMENTS`.
    """
    if placement not in PRIVACY_PLACEMENTS:
        raise ValueError(f"privacy_placement must be one of {PRIVACY_PLACEMENTS}, got privacy_placement={placement!r}")
    return placement


def _check_rng(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be None, an integer seed or a numpy.random.Generator, got rng={rng!r} of type {type(rng).__name__}"
    )


# --- exact discrete Laplace sampler --------------------------------------------------------------
# Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020,
# arXiv:2004.00010), Algorithms 1 and 2, vectorised over samples. Every random decision is an
# integer drawn uniformly by Generator.integers, which rejects instead of rounding, so the sampled
# distribution is exact: no floating-point number is involved.


def _bernoulli_exp(rng: np.random.Generator, numerators: np.ndarray, denominator: int) -> np.ndarray:
    """Draw one Bernoulli(exp(-n / d)) per numerator n, for 0 <= n <= d.

    Draws A_k ~ Bernoulli(gamma / k) for k = 1, 2, ... until one is 0. The index K of that draw is
    odd with probability sum_j (-gamma)^j / j! = exp(-gamma).
    """
    numerators = np.asarray(numerators, dtype=np.int64).ravel()
    stop_index = np.zeros(numerators.size, dtype=np.int64)
    pending = np.arange(numerators.size)
    k = 1
    while pending.size:
        # A ~ Bernoulli(n / (d k)) exactly: a uniform integer in [0, d k) is below n
        draws = rng.integers(0, denominator * k, size=pending.size)
        stopped = draws >= numerators[pending]
        stop_index[pending[stopped]] = k
        pending = pending[~stopped]
        k += 1
    return stop_index % 2 == 1


def _geometric_exp_minus_one(rng: np.random.Generator, size: int) -> np.ndarray:
    """Count the successes of Bernoulli(exp(-1)) before the first failure, `size` times."""
    counts = np.zeros(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        success = _bernoulli_exp(rng, np.ones(pending.size, dtype=np.int64), 1)
        counts[pending[success]] += 1
        pending = pending[success]
    return counts


def _sample_discrete_laplace(rng: np.random.Generator, s: int, t: int, size: int) -> np.ndarray:
    """Draw integers Z with P(Z = z) proportional to exp(-|z| s / t), that is scale t / s.

    Parameters
    ----------
    s, t : int >= 1
    size : int >= 0

    Returns
    -------
    ndarray of int64, shape (size,)
    """
    samples = np.zeros(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        m = pending.size
        u = rng.integers(0, t, size=m)  # U uniform on {0, ..., t-1}
        keep = _bernoulli_exp(rng, u, t)  # accept U with probability exp(-U / t)
        v = _geometric_exp_minus_one(rng, m)  # V ~ Geometric(1 - exp(-1))
        if v.max() > (np.iinfo(np.int64).max - t) // t:
            # P(V >= 2**14) < exp(-16000) for t <= 2**48: unreachable in practice, but never wrap
            raise OverflowError(f"discrete Laplace draw U + t * V overflows int64 for t={t}")
        x = u + t * v  # X ~ Geometric(1 - exp(-1 / t))
        y = x // s  # Y ~ Geometric(1 - exp(-s / t))
        negative = rng.integers(0, 2, size=m).astype(bool)
        keep &= ~(negative & (y == 0))  # reject -0 so that 0 is not counted twice
        samples[pending[keep]] = np.where(negative[keep], -y[keep], y[keep])
        pending = pending[~keep]
    return samples


# --- the mechanism -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseParameters:
    """The discrete Laplace noise applied to one released vector of `num_values` values.

    Attributes
    ----------
    num_values : int
        C, the length of each released vector.
    sensitivity : float
        Delta, the L1 sensitivity of one released vector before rounding to the grid.
    grid_step : float
        gamma, a power of two; released values are integer multiples of it. 0 when no noise is added.
    sensitivity_steps : int
        The L1 sensitivity after rounding to the grid, in grid steps.
    epsilon_used : Fraction
        p / q <= epsilon, the privacy loss that the noise actually achieves.
    scale : float
        b = sensitivity_steps * grid_step / epsilon_used, the Laplace scale in value units; at
        least sensitivity / epsilon and about a factor 1 + 2**-12 above it at most.
    """

    num_values: int
    sensitivity: float
    grid_step: float
    sensitivity_steps: int
    epsilon_used: Fraction
    scale: float


class LaplaceMechanism:
    """The Laplace mechanism on a grid: clip, round to a power-of-two grid, add discrete Laplace noise.

    Each call to `randomise` releases the vectors along the last axis of its input. Each released
    vector of C values is epsilon-differentially private with respect to any change of the input
    that moves the vector by at most the L1 sensitivity.

    Parameters
    ----------
    epsilon : float in (0, inf)
        Privacy loss of one released vector. Smaller means more noise.
    sensitivity : float in [0, inf), optional
        L1 sensitivity of one released vector: the largest sum over its C values of
        |v - v'| for neighbouring inputs. Defaults to C * (upper - lower) when bounds are given.
        Pass it with bounds only when a tighter bound than C * (upper - lower) is proven.
    lower, upper : float, optional
        Clipping bounds, given together, lower < upper. Every value is clipped to [lower, upper]
        before noise is added, which makes the sensitivity finite.
    rng : None, int or numpy.random.Generator, optional
        Source of randomness; a seed makes the noise reproducible. For a real deployment pass a
        generator seeded from the operating system (the default), because a seeded generator lets
        whoever knows the seed subtract the noise.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If a parameter is out of range, only one bound is given, or neither the sensitivity nor the
        bounds are given.

    Notes
    -----
    Sampler. Textbook Laplace sampling, ``x - b * sign(u) * log(1 - 2 |u|)`` in float64, leaks
    the input through which floating-point numbers can be output (Mironov 2012). Instead, for a
    vector of C values:

    1. clip each value to [lower, upper] (when bounds are given);
    2. round each value to the grid gamma * Z, where gamma is the largest power of two not above
       2**-12 * min(b, Delta / C), b = Delta / epsilon. Dividing by a power of two and `numpy.rint`
       are exact in float64, so the grid index k is computed exactly;
    3. add an integer Z drawn exactly from the discrete Laplace distribution
       P(Z = z) ~ exp(-|z| p / (q Delta_k)), using only uniform integers. Delta_k is the L1
       sensitivity of k in grid steps, and p / q <= epsilon is within a relative 2**-20 of it
       unless the sampler's 2**48 integer limit forces a smaller q (epsilon far below 1);
    4. return (k + Z) * gamma, which is a function of the integer k + Z alone because IEEE addition
       and scaling by a power of two round correctly.

    Guarantee. With bounds, Delta_k = C * (rint(upper / gamma) - rint(lower / gamma)), exact
    because rounding is monotone. With only a sensitivity, rounding moves each value by at most
    half a step, so Delta_k = ceil(Delta / gamma) + C. Steps 3 and 4 then give exactly
    (p / q)-differential privacy, p / q <= epsilon, for the integer vector k and so for the output.
    The price of hardening is paid in noise, not in epsilon: the scale exceeds Delta / epsilon by a
    factor of at most about 1 + 2**-12, and each value moves by at most gamma / 2 when rounded.
    The guarantee assumes that the generator's output is unpredictable to the adversary; numpy's
    PCG64 is not a cryptographic generator.
    """

    def __init__(self, *, epsilon, sensitivity=None, lower=None, upper=None, rng=None):
        self.epsilon = check_epsilon(epsilon)
        self.sensitivity = None if sensitivity is None else check_sensitivity(sensitivity)
        if (lower is None) != (upper is None):
            raise ValueError(
                f"lower and upper must be given together, got lower={lower!r} and upper={upper!r}; "
                "pass both clipping bounds or neither"
            )
        if lower is None:
            self.lower = self.upper = None
        else:
            self.lower, self.upper = check_bounds(lower, upper)
        if self.sensitivity is None and self.lower is None:
            raise ValueError(
                "LaplaceMechanism needs sensitivity or both lower and upper, got neither; pass the "
                "clipping bounds of the released values, for example lower=-10.0, upper=10.0"
            )
        self.rng = _check_rng(rng)

    def __repr__(self) -> str:
        return (
            f"LaplaceMechanism(epsilon={self.epsilon!r}, sensitivity={self.sensitivity!r}, "
            f"lower={self.lower!r}, upper={self.upper!r})"
        )

    @property
    def bounded(self) -> bool:
        """Whether values are clipped to [lower, upper] before noise is added."""
        return self.lower is not None

    def sensitivity_for(self, num_values: int) -> float:
        """Return the L1 sensitivity of one released vector of `num_values` values.

        It is the `sensitivity` given, else num_values * (upper - lower).
        """
        if self.sensitivity is not None:
            return self.sensitivity
        return num_values * (self.upper - self.lower)

    def noise_parameters(self, num_values: int) -> NoiseParameters:
        """Compute the grid and the discrete Laplace scale for released vectors of `num_values` values.

        Parameters
        ----------
        num_values : int >= 1
            C, the length of each released vector.

        Returns
        -------
        NoiseParameters
        """
        if isinstance(num_values, bool) or not isinstance(num_values, numbers.Integral) or num_values < 1:
            raise ValueError(f"num_values must be an integer >= 1, got num_values={num_values!r}")
        num_values = int(num_values)
        sensitivity = self.sensitivity_for(num_values)
        if sensitivity == 0.0:
            return NoiseParameters(num_values, 0.0, 0.0, 0, Fraction(self.epsilon), 0.0)

        # gamma: a power of two, small against both the noise scale and the per-value sensitivity
        nominal_scale = sensitivity / self.epsilon
        grid_step = math.ldexp(1.0, math.floor(math.log2(min(nominal_scale, sensitivity / num_values))) - GRID_BITS)

        # Delta_k: L1 sensitivity of the grid indices, in whole steps
        steps_from_sensitivity = None
        if self.sensitivity is not None:
            steps_from_sensitivity = math.ceil(self.sensitivity / grid_step) + num_values
        steps_from_bounds = None
        if self.bounded:
            index_range = int(np.rint(self.upper / grid_step)) - int(np.rint(self.lower / grid_step))
            steps_from_bounds = num_values * index_range
        sensitivity_steps = min(s for s in (steps_from_sensitivity, steps_from_bounds) if s is not None)

        # p / q <= epsilon with q a power of two, and t = Delta_k * q small enough for int64
        epsilon_exact = Fraction(self.epsilon)
        denominator = 2 ** max(0, EPSILON_BITS - math.floor(math.log2(self.epsilon)))
        while denominator > 1 and sensitivity_steps * denominator > MAX_SAMPLER_DENOMINATOR:
            denominator //= 2
        numerator = math.floor(epsilon_exact * denominator)
        if numerator == 0 or sensitivity_steps * denominator > MAX_SAMPLER_DENOMINATOR:
            raise ValueError(
                f"epsilon={self.epsilon!r} with L1 sensitivity {sensitivity:g} over {num_values} values needs a "
                f"discrete Laplace scale beyond the sampler's integer range (2**48 grid steps); "
                "raise epsilon or lower the sensitivity"
            )
        epsilon_used = Fraction(numerator, denominator)
        scale = float(sensitivity_steps * grid_step / epsilon_used)
        return NoiseParameters(num_values, sensitivity, grid_step, sensitivity_steps, epsilon_used, scale)

    def randomise(self, values) -> np.ndarray:
        """Clip, round to the grid and add discrete Laplace noise to each vector along the last axis.

        Parameters
        ----------
        values : array_like of real, shape (..., C)
            Each row along the last axis is one released vector; a scalar is one vector with C = 1.

        Returns
        -------
        ndarray of float64, shape like `values`
            Integer multiples of the grid step (``noise_parameters(C).grid_step``).

        Raises
        ------
        TypeError
            If `values` is not real-valued.
        ValueError
            If `values` contains NaN, or infinities while no bounds are set.
        """
        array = np.asarray(values)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise TypeError(f"values must be real numbers, got an array of dtype {array.dtype}")
        array = array.astype(np.float64)
        if np.isnan(array).any():
            raise ValueError("values contain NaN, which cannot be clipped or noised; drop or replace them first")
        if self.bounded:
            array = np.clip(array, self.lower, self.upper)
        elif np.isinf(array).any():
            raise ValueError(
                "values contain infinities and the mechanism has no clipping bounds; pass lower and upper"
            )

        num_values = array.shape[-1] if array.ndim else 1
        if array.size == 0:
            return array
        parameters = self.noise_parameters(num_values)
        if parameters.sensitivity_steps == 0:
            return array

        grid_index = np.rint(array / parameters.grid_step)
        noise_steps = _sample_discrete_laplace(
            self.rng,
            s=parameters.epsilon_used.numerator,
            t=parameters.sensitivity_steps * parameters.epsilon_used.denominator,
            size=array.size,
        )
        return (grid_index + noise_steps.reshape(array.shape)) * parameters.grid_step


# --- accountant ----------------------------------------------------------------------------------


class PrivacyAccountant:
    """Sum of epsilon over released vectors, with an optional budget (basic composition).

    Basic composition: releasing n vectors, each epsilon-differentially private, is
    (n * epsilon)-differentially private, whatever the vectors share. `spent` is therefore an upper
    bound on the privacy loss of any one query, and of the whole set of queries answered so far.

    Parameters
    ----------
    budget : float in (0, inf), optional
        Largest total epsilon to spend; `record` raises instead of exceeding it. None means no limit.

    Attributes
    ----------
    spent : float
        Total epsilon recorded so far.
    releases : int
        Total number of released vectors recorded so far.
    """

    def __init__(self, budget=None):
        self.budget = None if budget is None else _check_budget(budget)
        self._lock = threading.Lock()
        self._spent_terms: list[float] = []
        self.spent = 0.0
        self.releases = 0

    def __repr__(self) -> str:
        return f"PrivacyAccountant(budget={self.budget!r}, spent={self.spent!r}, releases={self.releases})"

    @property
    def remaining(self) -> float:
        """Epsilon left in the budget (inf without a budget, never negative)."""
        if self.budget is None:
            return math.inf
        return max(self.budget - self.spent, 0.0)

    def record(self, n: int, epsilon) -> float:
        """Record n released vectors of privacy loss epsilon each, and return the new total.

        Parameters
        ----------
        n : int >= 0
            Number of released vectors.
        epsilon : float in (0, inf)
            Privacy loss of each.

        Returns
        -------
        float
            The total epsilon spent, this release included.

        Raises
        ------
        PrivacyBudgetExceededError
            If the release would exceed the budget; nothing is recorded then, so the caller must
            not release the vectors.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got n={n!r}")
        epsilon = check_epsilon(epsilon)
        cost = int(n) * epsilon
        with self._lock:
            total = math.fsum([*self._spent_terms, cost])
            if self.budget is not None and total > self.budget * (1.0 + BUDGET_RELATIVE_TOLERANCE):
                raise PrivacyBudgetExceededError(
                    f"releasing {n} vectors at epsilon={epsilon:g} would spend {total:g} of budget={self.budget:g} "
                    f"(spent {self.spent:g}, remaining {self.remaining:g}); raise the budget, lower epsilon "
                    "or answer fewer queries"
                )
            self._spent_terms.append(cost)
            self.spent = total
            self.releases += int(n)
        logger.debug("privacy accountant: spent %g after %d releases", total, self.releases)
        return total


def _check_budget(budget) -> float:
    value = _check_real("budget", budget)
    if not (0.0 < value < math.inf):
        raise ValueError(f"budget must be in (0, inf), got budget={budget!r}; pass a positive total epsilon or None")
    return value


# --- placements ----------------------------------------------------------------------------------


def apply_to_outputs(results, mechanism: LaplaceMechanism):
    """Clip and noise worker predictions before they are released (placement ``"outputs"``).

    Parameters
    ----------
    results : array_like of shape (..., C), or Mapping[int, Sequence[array_like of shape (G, C)]]
        Worker predictions, one released vector per row along the last axis. A mapping goes from
        worker index to the list of that worker's output arrays, as the backends return them.
    mechanism : LaplaceMechanism
        Each row costs `mechanism.epsilon` in privacy loss.

    Returns
    -------
    ndarray of float64 of the same shape, or a dict of lists of such arrays
    """
    _check_mechanism(mechanism)
    if not mechanism.bounded:
        warnings.warn(
            f"the mechanism has no clipping bounds, so the outputs placement holds only if every worker "
            f"output vector moves by at most sensitivity={mechanism.sensitivity:g} in L1 between "
            "neighbouring queries; pass lower and upper to make the guarantee unconditional",
            PrivacyWarning,
            stacklevel=2,
        )
    if isinstance(results, Mapping):
        return {worker: [mechanism.randomise(array) for array in arrays] for worker, arrays in results.items()}
    return mechanism.randomise(results)


def apply_to_queries(coded, mechanism: LaplaceMechanism, input_range: Sequence[float]) -> np.ndarray:
    """Clip coded queries to the input range and noise them before they leave the client.

    Placement ``"queries"``: each coded query is one released vector of d = prod(shape) values.
    Coded queries are affine combinations with negative weights, so they can leave the input range.
    Clipping them back bounds the L1 sensitivity of one coded query by d * (high - low).

    Parameters
    ----------
    coded : array_like of real, shape (G, N, *shape)
        Coded queries, G groups of N workers.
    mechanism : LaplaceMechanism
        Noise per coded query; with bounds, its sensitivity is d * (upper - lower).
    input_range : (float, float)
        (low, high), the interval that real inputs lie in, for example (0.0, 1.0).

    Returns
    -------
    ndarray of float64, shape (G, N, *shape)

    Warns
    -----
    PrivacyWarning
        If the mechanism has no bounds and its sensitivity is below d * (high - low).
    """
    _check_mechanism(mechanism)
    if isinstance(input_range, (str, bytes)) or not isinstance(input_range, Sequence) or len(input_range) != 2:
        raise TypeError(f"input_range must be a pair (low, high), got input_range={input_range!r}")
    low, high = check_bounds(*input_range)
    array = np.asarray(coded, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(
            f"coded queries must have shape (G, N, *shape), got an array of shape {array.shape}"
        )

    groups, workers = array.shape[:2]
    flat = np.clip(array.reshape(groups, workers, -1), low, high)
    query_size = flat.shape[-1]
    if not mechanism.bounded and mechanism.sensitivity < query_size * (high - low):
        warnings.warn(
            f"sensitivity={mechanism.sensitivity:g} is below the L1 sensitivity of one clipped coded query, "
            f"{query_size} * ({high:g} - {low:g}) = {query_size * (high - low):g}, so epsilon={mechanism.epsilon:g} "
            "holds only for neighbouring queries closer than that; pass lower and upper instead",
            PrivacyWarning,
            stacklevel=2,
        )
    return mechanism.randomise(flat).reshape(array.shape)


class PrivacyPolicy:
    """A mechanism, its placement and an accountant: the privacy option of a coded session.

    A session calls `prepare_queries` after encoding and `release_outputs` after gathering. All
    vectors that a call may release are charged to the accountant before any coded query leaves
    the client, so an exceeded budget raises before anything is released.

    Parameters
    ----------
    mechanism : LaplaceMechanism
    placement : {"outputs", "queries"}
        "outputs" noises each worker's output vectors. "queries" noises each coded query and
        needs the mechanism's lower and upper, which are the input range that coded queries are
        clipped to.
    budget : float in (0, inf), optional
        Total epsilon allowed over the policy's lifetime; None means no limit.

    Attributes
    ----------
    accountant : PrivacyAccountant
    """

    def __init__(self, mechanism: LaplaceMechanism, placement: str = "outputs", budget=None):
        _check_mechanism(mechanism)
        self.mechanism = mechanism
        self.placement = check_placement(placement)
        if self.placement == "queries" and not mechanism.bounded:
            raise ValueError(
                "privacy_placement='queries' clips coded queries to the input range, so the mechanism "
                f"needs lower and upper, got {mechanism!r}; pass LaplaceMechanism(epsilon=..., "
                "lower=0.0, upper=1.0) for inputs scaled to [0, 1]"
            )
        self.accountant = PrivacyAccountant(budget)

    def __repr__(self) -> str:
        return f"PrivacyPolicy({self.mechanism!r}, placement={self.placement!r}, accountant={self.accountant!r})"

    def prepare_queries(self, coded: np.ndarray, num_outputs: int = 1) -> np.ndarray:
        """Charge the accountant for one call and noise the coded queries for placement "queries".

        Parameters
        ----------
        coded : ndarray of float64, shape (G, N, *shape)
        num_outputs : int >= 1
            Outputs requested per worker; with placement "outputs" each is one released vector
            per group and worker.

        Returns
        -------
        ndarray of float64, shape (G, N, *shape)
            The coded queries, noised for placement "queries", unchanged otherwise.

        Raises
        ------
        PrivacyBudgetExceededError
            If the call would exceed the budget; then nothing is charged or released.
        """
        groups, workers = np.shape(coded)[:2]
        released = groups * workers * (num_outputs if self.placement == "outputs" else 1)
        self.accountant.record(released, self.mechanism.epsilon)
        if self.placement != "queries":
            return coded
        return apply_to_queries(coded, self.mechanism, (self.mechanism.lower, self.mechanism.upper))

    def release_outputs(self, outputs):
        """Noise worker outputs for placement "outputs"; return them unchanged otherwise.

        Parameters
        ----------
        outputs : Mapping[int, Sequence[ndarray of shape (G, C)]] or ndarray of shape (..., C)
            As in `apply_to_outputs`.
        """
        if self.placement != "outputs":
            return outputs
        return apply_to_outputs(outputs, self.mechanism)


def _check_mechanism(mechanism) -> None:
    if not isinstance(mechanism, LaplaceMechanism):
        raise TypeError(f"mechanism must be a LaplaceMechanism, got {type(mechanism).__name__}")
