"""Tests of the Laplace mechanism, its exact discrete sampler, the accountant and the placements.

Statistical tests are seeded, so they are deterministic. Each states its significance level or
slack, and each has a negative control which shows that it detects a wrong mechanism.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from approxifer_onnx.exceptions import PrivacyWarning
from approxifer_onnx.privacy import (
    PRIVACY_PLACEMENTS,
    LaplaceMechanism,
    PrivacyAccountant,
    PrivacyBudgetExceededError,
    PrivacyPolicy,
    _bernoulli_exp,
    _sample_discrete_laplace,
    apply_to_outputs,
    apply_to_queries,
    check_placement,
)

# Significance level of the goodness-of-fit tests: with fixed seeds a failure is reproducible, and
# at 0.001 a correct sampler fails a given seed with probability 0.001.
ALPHA = 0.001


# --- validation ----------------------------------------------------------------------------------

# (keyword arguments, exception, pinned message)
INVALID_MECHANISMS = [
    (dict(epsilon=0, sensitivity=1), ValueError, r"epsilon must be in \(0, inf\), got epsilon=0;"),
    (dict(epsilon=-1.5, sensitivity=1), ValueError, r"epsilon must be in \(0, inf\), got epsilon=-1\.5;"),
    (dict(epsilon=math.inf, sensitivity=1), ValueError, r"epsilon must be in \(0, inf\), got epsilon=inf;"),
    (dict(epsilon=math.nan, sensitivity=1), ValueError, r"epsilon must be in \(0, inf\), got epsilon=nan;"),
    (dict(epsilon="1", sensitivity=1), TypeError, r"epsilon must be a real number, got epsilon='1' of type str"),
    (dict(epsilon=True, sensitivity=1), TypeError, r"epsilon must be a real number, got epsilon=True of type bool"),
    (dict(epsilon=1, sensitivity=-0.5), ValueError, r"sensitivity must be in \[0, inf\), got sensitivity=-0\.5;"),
    (dict(epsilon=1, sensitivity=math.inf), ValueError, r"sensitivity must be in \[0, inf\), got sensitivity=inf;"),
    (dict(epsilon=1, sensitivity=[1]), TypeError, r"sensitivity must be a real number, got sensitivity=\[1\] of type list"),
    (dict(epsilon=1, lower=0), ValueError, r"lower and upper must be given together, got lower=0 and upper=None;"),
    (dict(epsilon=1, upper=1), ValueError, r"lower and upper must be given together, got lower=None and upper=1;"),
    (dict(epsilon=1, lower=1, upper=1), ValueError, r"lower must be less than upper, got lower=1 and upper=1;"),
    (dict(epsilon=1, lower=2, upper=-2), ValueError, r"lower must be less than upper, got lower=2 and upper=-2;"),
    (dict(epsilon=1, lower=-math.inf, upper=0), ValueError, r"lower must be in \(-inf, inf\), got lower=-inf;"),
    (dict(epsilon=1, lower=0, upper=math.nan), ValueError, r"upper must be in \(-inf, inf\), got upper=nan;"),
    (dict(epsilon=1), ValueError, r"LaplaceMechanism needs sensitivity or both lower and upper, got neither;"),
    (dict(epsilon=1, sensitivity=1, rng=1.5), TypeError, r"rng must be None, an integer seed or a numpy\.random\.Generator, got rng=1\.5"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), INVALID_MECHANISMS)
def test_mechanism_rejects_invalid_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        LaplaceMechanism(**kwargs)


def test_mechanism_parameters_are_keyword_only():
    with pytest.raises(TypeError, match=r"takes 1 positional argument but 2 were given"):
        LaplaceMechanism(1.0)


def test_mechanism_stores_cleaned_values():
    mechanism = LaplaceMechanism(epsilon=2, lower=-1, upper=np.float32(3))
    assert type(mechanism.epsilon) is float
    assert (mechanism.lower, mechanism.upper) == (-1.0, 3.0)
    assert mechanism.sensitivity is None
    assert mechanism.sensitivity_for(5) == 20.0


def test_randomise_rejects_nan():
    mechanism = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=0)
    with pytest.raises(ValueError, match=r"values contain NaN, which cannot be clipped or noised"):
        mechanism.randomise([0.5, math.nan])


def test_randomise_rejects_infinity_without_bounds():
    mechanism = LaplaceMechanism(epsilon=1, sensitivity=1, rng=0)
    with pytest.raises(ValueError, match=r"values contain infinities and the mechanism has no clipping bounds"):
        mechanism.randomise([0.5, math.inf])


def test_randomise_clips_infinity_with_bounds():
    mechanism = LaplaceMechanism(epsilon=1, lower=0, upper=1, sensitivity=0, rng=0)
    np.testing.assert_array_equal(mechanism.randomise([-math.inf, math.inf]), [0.0, 1.0])


def test_randomise_rejects_non_real_values():
    mechanism = LaplaceMechanism(epsilon=1, sensitivity=1, rng=0)
    with pytest.raises(TypeError, match=r"values must be real numbers, got an array of dtype complex128"):
        mechanism.randomise(np.array([1 + 2j]))


@pytest.mark.parametrize("num_values", [0, -3, 2.5, True])
def test_noise_parameters_reject_invalid_length(num_values):
    mechanism = LaplaceMechanism(epsilon=1, sensitivity=1)
    with pytest.raises(ValueError, match=rf"num_values must be an integer >= 1, got num_values={num_values!r}"):
        mechanism.noise_parameters(num_values)


def test_check_placement_accepts_each_placement():
    for placement in PRIVACY_PLACEMENTS:
        assert check_placement(placement) == placement


def test_check_placement_rejects_unknown():
    with pytest.raises(ValueError, match=r"privacy_placement must be one of \('outputs', 'queries'\), got privacy_placement='inputs'"):
        check_placement("inputs")


# --- the grid and the scale ----------------------------------------------------------------------

# (epsilon, C, sensitivity or None for bounds [-2, 3]): tiny to huge epsilon, scalar to an image
NOISE_SETTINGS = [
    (1e-3, 1, None),
    (0.1, 10, None),
    (1.0, 784, None),
    (100.0, 10, None),
    (1e6, 10, None),
    (0.5, 10, 4.0),
    (1e-3, 784, 1.0),
    (1e-5, 1, 1.0),
]


@pytest.mark.parametrize(("epsilon", "num_values", "sensitivity"), NOISE_SETTINGS)
def test_noise_parameters_meet_epsilon_with_small_overhead(epsilon, num_values, sensitivity):
    if sensitivity is None:
        mechanism = LaplaceMechanism(epsilon=epsilon, lower=-2, upper=3)
        sensitivity = num_values * 5.0
    else:
        mechanism = LaplaceMechanism(epsilon=epsilon, sensitivity=sensitivity)
    parameters = mechanism.noise_parameters(num_values)

    # the privacy loss actually achieved never exceeds epsilon, and is close to it
    assert parameters.epsilon_used <= Fraction(epsilon)
    assert float(parameters.epsilon_used) >= epsilon * (1 - 1e-3)

    # the grid step is a power of two, fine against the scale and the per-value sensitivity
    mantissa, _ = math.frexp(parameters.grid_step)
    assert mantissa == 0.5
    assert parameters.grid_step <= 2**-12 * min(sensitivity / epsilon, sensitivity / num_values)

    # the grid sensitivity covers the real one, and the scale is Delta / epsilon plus a small overhead
    assert parameters.sensitivity_steps * parameters.grid_step >= sensitivity
    nominal_scale = sensitivity / epsilon
    assert parameters.scale >= nominal_scale
    assert parameters.scale <= nominal_scale * (1 + 2**-11 + 1e-3)


def test_zero_sensitivity_adds_no_noise():
    mechanism = LaplaceMechanism(epsilon=1, sensitivity=0, lower=0, upper=1, rng=0)
    np.testing.assert_array_equal(mechanism.randomise([[-1.0, 0.25, 7.0]]), [[0.0, 0.25, 1.0]])


def test_randomise_outputs_lie_on_the_grid():
    # the float64 low bits of an output never depend on the input: outputs are multiples of gamma
    mechanism = LaplaceMechanism(epsilon=0.7, lower=-3, upper=5, rng=1)
    values = np.random.default_rng(2).uniform(-4, 6, size=(500, 10))
    released = mechanism.randomise(values)
    steps = released / mechanism.noise_parameters(10).grid_step
    np.testing.assert_array_equal(steps, np.rint(steps))


def test_randomise_keeps_shape_and_returns_float64():
    mechanism = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=0)
    for shape in [(), (4,), (2, 3, 5)]:
        released = mechanism.randomise(np.full(shape, 0.5, dtype=np.float32))
        assert released.shape == shape
        assert released.dtype == np.float64


def test_randomise_is_reproducible_with_a_seed():
    values = np.linspace(0, 1, 30).reshape(3, 10)
    first = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=42).randomise(values)
    second = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=42).randomise(values)
    other = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=43).randomise(values)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_randomise_draws_from_the_generator_passed():
    generator = np.random.default_rng(5)
    mechanism = LaplaceMechanism(epsilon=1, lower=0, upper=1, rng=generator)
    assert mechanism.rng is generator
    first = mechanism.randomise(np.zeros(8))
    second = mechanism.randomise(np.zeros(8))
    assert not np.array_equal(first, second)


# --- distribution of the noise -------------------------------------------------------------------


def test_discrete_sampler_matches_exact_pmf():
    # scale t / s = 1.5 exactly: P(Z = z) = (1 - r) / (1 + r) * r**|z| with r = exp(-2 / 3)
    rng = np.random.default_rng(11)
    samples = _sample_discrete_laplace(rng, s=2, t=3, size=60_000)
    ratio = math.exp(-2 / 3)
    support = np.arange(-8, 9)
    pmf = (1 - ratio) / (1 + ratio) * ratio ** np.abs(support)
    observed = np.array([np.sum(samples == z) for z in support])
    # the two tails |z| > 8 share one cell
    observed = np.append(observed, samples.size - observed.sum())
    expected = np.append(pmf, 1 - pmf.sum()) * samples.size
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def test_discrete_sampler_chi_square_detects_wrong_scale():
    # negative control: the same test rejects samples of scale 1.5 against the pmf of scale 1.8
    rng = np.random.default_rng(11)
    samples = _sample_discrete_laplace(rng, s=2, t=3, size=60_000)
    ratio = math.exp(-1 / 1.8)
    support = np.arange(-8, 9)
    pmf = (1 - ratio) / (1 + ratio) * ratio ** np.abs(support)
    observed = np.array([np.sum(samples == z) for z in support])
    observed = np.append(observed, samples.size - observed.sum())
    expected = np.append(pmf, 1 - pmf.sum()) * samples.size
    assert stats.chisquare(observed, expected).pvalue < ALPHA


@pytest.mark.parametrize(("numerator", "denominator"), [(0, 1), (1, 2), (7, 7), (3, 1000)])
def test_bernoulli_exp_has_probability_exp_minus_gamma(numerator, denominator):
    rng = np.random.default_rng(3)
    draws = _bernoulli_exp(rng, np.full(40_000, numerator), denominator)
    successes = int(draws.sum())
    probability = math.exp(-numerator / denominator)
    if probability == 1.0:
        assert successes == draws.size
    else:
        assert stats.binomtest(successes, draws.size, probability).pvalue > ALPHA


# (epsilon, C, bounds): the noise on one value has scale C * (upper - lower) / epsilon
KS_SETTINGS = [
    (0.5, 1, (0.0, 1.0)),  # b = 2
    (2.0, 10, (-1.0, 1.0)),  # b = 10
    (50.0, 4, (-20.0, 20.0)),  # b = 3.2
]


@pytest.mark.parametrize(("epsilon", "num_values", "bounds"), KS_SETTINGS)
def test_noise_is_laplace_with_scale_sensitivity_over_epsilon(epsilon, num_values, bounds):
    # The grid step is at most 2**-12 b, which moves the CDF by less than 2**-12; with 20000 values
    # the KS test only resolves differences of about 1.36 / sqrt(20000) = 0.0096, so the grid is
    # negligible here and the test compares against the continuous Laplace(0, b).
    lower, upper = bounds
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=lower, upper=upper, rng=7)
    scale = num_values * (upper - lower) / epsilon
    center = 0.0  # on the grid, so the released value minus 0 is the noise
    released = mechanism.randomise(np.full((20_000 // num_values, num_values), center))
    noise = (released - center).ravel()
    assert stats.kstest(noise, "laplace", args=(0.0, scale)).pvalue > ALPHA


def test_ks_test_detects_wrong_scale():
    # negative control: the KS test rejects noise of scale 2 against Laplace(0, 2.2)
    mechanism = LaplaceMechanism(epsilon=0.5, lower=0, upper=1, rng=7)
    noise = mechanism.randomise(np.zeros((20_000, 1))).ravel()
    assert stats.kstest(noise, "laplace", args=(0.0, 2.2)).pvalue < ALPHA


def _max_log_ratio(first, second, edges, min_count):
    """Return the largest |log(frequency ratio)| over bins where both samples have min_count hits."""
    counts_first, _ = np.histogramdd(first, bins=edges)
    counts_second, _ = np.histogramdd(second, bins=edges)
    usable = (counts_first >= min_count) & (counts_second >= min_count)
    assert usable.sum() >= 4, "too few populated bins to compare"
    log_ratio = np.log(counts_first[usable] / counts_second[usable])
    return float(np.abs(log_ratio).max())


# Slack on the log of the frequency ratio: bins need 4000 hits in both samples, so the standard
# error of a log ratio is at most sqrt(2 / 4000) = 0.022, and 0.15 is about 6.7 standard errors.
RATIO_SLACK = 0.15
RATIO_SAMPLES = 400_000
RATIO_MIN_COUNT = 4000


def test_neighbouring_scalars_stay_within_exp_epsilon():
    # 0 and 1 are as far apart as bounds [0, 1] allow, so the worst bins reach exactly e**epsilon
    epsilon = 1.0
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=0, upper=1, rng=21)
    first = mechanism.randomise(np.zeros((RATIO_SAMPLES, 1)))
    second = mechanism.randomise(np.ones((RATIO_SAMPLES, 1)))
    edges = [np.arange(-6.0, 7.01, 0.5)]
    max_log_ratio = _max_log_ratio(first, second, edges, RATIO_MIN_COUNT)
    assert max_log_ratio <= epsilon + RATIO_SLACK
    # and the noise is not larger than it needs to be
    assert max_log_ratio >= epsilon - RATIO_SLACK


def test_neighbouring_vectors_stay_within_exp_epsilon():
    # C = 2, bounds [0, 1]: (0, 0) and (1, 1) differ by the full L1 sensitivity 2 (scale 2 / epsilon)
    epsilon = 1.5
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=0, upper=1, rng=22)
    first = mechanism.randomise(np.zeros((RATIO_SAMPLES, 2)))
    second = mechanism.randomise(np.ones((RATIO_SAMPLES, 2)))
    edges = [np.arange(-3.0, 4.01, 1.0)] * 2
    max_log_ratio = _max_log_ratio(first, second, edges, RATIO_MIN_COUNT)
    assert max_log_ratio <= epsilon + RATIO_SLACK
    assert max_log_ratio >= epsilon - RATIO_SLACK


def test_ratio_test_detects_sensitivity_violation():
    # negative control: inputs 3 apart under a mechanism configured with sensitivity 1 give a
    # ratio near e**3, far above e**(epsilon + slack)
    epsilon = 1.0
    mechanism = LaplaceMechanism(epsilon=epsilon, sensitivity=1, rng=23)
    first = mechanism.randomise(np.zeros((RATIO_SAMPLES, 1)))
    second = mechanism.randomise(np.full((RATIO_SAMPLES, 1), 3.0))
    edges = [np.arange(-6.0, 9.01, 0.5)]
    assert _max_log_ratio(first, second, edges, RATIO_MIN_COUNT) > epsilon + RATIO_SLACK


# --- accountant ----------------------------------------------------------------------------------


def test_accountant_sums_epsilon_over_releases():
    accountant = PrivacyAccountant()
    assert accountant.record(9, 0.5) == 4.5
    assert accountant.record(0, 3.0) == 4.5
    assert accountant.record(2, 0.25) == 5.0
    assert accountant.spent == 5.0
    assert accountant.releases == 11
    assert accountant.remaining == math.inf


def test_accountant_accepts_float_sum_at_budget():
    # 0.1 + 0.1 + 0.1 is 0.30000000000000004 in float64 and must still fit a budget of 0.3
    accountant = PrivacyAccountant(budget=0.3)
    for _ in range(3):
        accountant.record(1, 0.1)
    assert accountant.spent == pytest.approx(0.3)
    assert accountant.remaining == pytest.approx(0.0, abs=1e-15)


def test_accountant_rejects_release_over_budget():
    accountant = PrivacyAccountant(budget=2.0)
    accountant.record(3, 0.5)
    with pytest.raises(
        PrivacyBudgetExceededError,
        match=r"releasing 2 vectors at epsilon=0\.5 would spend 2\.5 of budget=2 \(spent 1\.5, remaining 0\.5\)",
    ):
        accountant.record(2, 0.5)
    # nothing was recorded, so a release that fits still goes through
    assert accountant.spent == 1.5
    assert accountant.releases == 3
    assert accountant.record(1, 0.5) == 2.0


@pytest.mark.parametrize(
    ("budget", "error", "message"),
    [
        (0, ValueError, r"budget must be in \(0, inf\), got budget=0;"),
        (math.inf, ValueError, r"budget must be in \(0, inf\), got budget=inf;"),
        ("1", TypeError, r"budget must be a real number, got budget='1' of type str"),
    ],
)
def test_accountant_rejects_invalid_budget(budget, error, message):
    with pytest.raises(error, match=message):
        PrivacyAccountant(budget=budget)


@pytest.mark.parametrize(
    ("n", "epsilon", "error", "message"),
    [
        (-1, 1.0, ValueError, r"n must be an integer >= 0, got n=-1"),
        (1.5, 1.0, ValueError, r"n must be an integer >= 0, got n=1\.5"),
        (1, 0.0, ValueError, r"epsilon must be in \(0, inf\), got epsilon=0\.0;"),
    ],
)
def test_accountant_rejects_invalid_record(n, epsilon, error, message):
    accountant = PrivacyAccountant()
    with pytest.raises(error, match=message):
        accountant.record(n, epsilon)
    assert accountant.spent == 0.0


# --- placements ----------------------------------------------------------------------------------


def test_apply_to_queries_clips_to_input_range():
    # with epsilon = 1e9 the noise scale is 784e-9, so the result is the clipped coded queries
    rng = np.random.default_rng(0)
    coded = rng.uniform(-0.5, 1.5, size=(3, 5, 1, 28, 28))
    mechanism = LaplaceMechanism(epsilon=1e9, lower=0.0, upper=1.0, rng=1)
    released = apply_to_queries(coded, mechanism, input_range=(0.0, 1.0))
    assert released.shape == coded.shape
    np.testing.assert_allclose(released, np.clip(coded, 0.0, 1.0), atol=1e-4)


def test_apply_to_queries_noise_per_coded_query():
    # one coded query of d = 12 values in [0, 1] has L1 sensitivity 12, so the scale is 12 / epsilon
    epsilon = 4.0
    coded = np.full((2000, 3, 12), 0.5)
    mechanism = LaplaceMechanism(epsilon=epsilon, lower=0.0, upper=1.0, rng=2)
    noise = (apply_to_queries(coded, mechanism, input_range=(0.0, 1.0)) - 0.5).ravel()
    assert stats.kstest(noise, "laplace", args=(0.0, 12 / epsilon)).pvalue > ALPHA


def test_apply_to_queries_warns_on_small_sensitivity():
    mechanism = LaplaceMechanism(epsilon=1.0, sensitivity=1.0, rng=0)
    with pytest.warns(
        PrivacyWarning,
        match=r"sensitivity=1 is below the L1 sensitivity of one clipped coded query, 4 \* \(1 - 0\) = 4",
    ):
        apply_to_queries(np.zeros((1, 2, 4)), mechanism, input_range=(0.0, 1.0))


@pytest.mark.parametrize(
    ("input_range", "error", "message"),
    [
        ((1.0, 0.0), ValueError, r"lower must be less than upper, got lower=1\.0 and upper=0\.0"),
        ("01", TypeError, r"input_range must be a pair \(low, high\), got input_range='01'"),
        ((0.0, 1.0, 2.0), TypeError, r"input_range must be a pair \(low, high\), got input_range=\(0\.0, 1\.0, 2\.0\)"),
    ],
)
def test_apply_to_queries_rejects_invalid_range(input_range, error, message):
    mechanism = LaplaceMechanism(epsilon=1.0, lower=0.0, upper=1.0, rng=0)
    with pytest.raises(error, match=message):
        apply_to_queries(np.zeros((1, 2, 4)), mechanism, input_range=input_range)


def test_apply_to_queries_rejects_flat_array():
    mechanism = LaplaceMechanism(epsilon=1.0, lower=0.0, upper=1.0, rng=0)
    with pytest.raises(ValueError, match=r"coded queries must have shape \(G, N, \*shape\), got an array of shape \(4,\)"):
        apply_to_queries(np.zeros(4), mechanism, input_range=(0.0, 1.0))


def test_apply_to_outputs_noises_arrays_and_worker_mappings():
    mechanism = LaplaceMechanism(epsilon=1e9, lower=-5.0, upper=5.0, rng=0)
    logits = np.array([[-9.0, 0.5, 2.0], [1.0, 6.0, -1.0]])
    np.testing.assert_allclose(apply_to_outputs(logits, mechanism), np.clip(logits, -5, 5), atol=1e-6)

    by_worker = {0: [logits], 3: [logits, logits[:1]]}
    released = apply_to_outputs(by_worker, mechanism)
    assert sorted(released) == [0, 3]
    assert [array.shape for array in released[3]] == [(2, 3), (1, 3)]
    np.testing.assert_allclose(released[3][1], [[-5.0, 0.5, 2.0]], atol=1e-6)


def test_apply_to_outputs_warns_without_bounds():
    mechanism = LaplaceMechanism(epsilon=1.0, sensitivity=2.0, rng=0)
    with pytest.warns(PrivacyWarning, match=r"the mechanism has no clipping bounds, so the outputs placement holds only if"):
        apply_to_outputs(np.zeros((1, 3)), mechanism)


def test_placements_reject_other_mechanisms():
    with pytest.raises(TypeError, match=r"mechanism must be a LaplaceMechanism, got dict"):
        apply_to_outputs(np.zeros((1, 3)), {"epsilon": 1.0})


# --- policy: what a session calls ----------------------------------------------------------------


def test_policy_outputs_charges_every_output_vector():
    policy = PrivacyPolicy(LaplaceMechanism(epsilon=0.5, lower=-5, upper=5, rng=0), "outputs")
    coded = np.full((3, 4, 1, 2, 2), 0.25)
    # G = 3 groups, N = 4 workers, 2 outputs each: 24 released vectors
    prepared = policy.prepare_queries(coded, num_outputs=2)
    assert prepared is coded
    assert policy.accountant.releases == 24
    assert policy.accountant.spent == 12.0


def test_policy_outputs_noises_outputs_only():
    policy = PrivacyPolicy(LaplaceMechanism(epsilon=1e9, lower=-5, upper=5, rng=0), "outputs")
    released = policy.release_outputs({1: [np.array([[9.0, -1.0]])]})
    np.testing.assert_allclose(released[1][0], [[5.0, -1.0]], atol=1e-6)


def test_policy_queries_noises_coded_queries_only():
    policy = PrivacyPolicy(LaplaceMechanism(epsilon=1e9, lower=0, upper=1, rng=0), "queries")
    coded = np.array([[[-0.5, 0.5], [1.5, 0.25]]])  # G = 1, N = 2, d = 2
    prepared = policy.prepare_queries(coded, num_outputs=3)
    np.testing.assert_allclose(prepared, [[[0.0, 0.5], [1.0, 0.25]]], atol=1e-6)
    # one released vector per coded query, whatever the number of outputs
    assert policy.accountant.releases == 2
    outputs = {0: [np.array([[7.0, 8.0]])]}
    assert policy.release_outputs(outputs) is outputs


def test_policy_budget_error_releases_nothing():
    policy = PrivacyPolicy(LaplaceMechanism(epsilon=1.0, lower=0, upper=1, rng=0), "queries", budget=5)
    coded = np.full((1, 4, 3), 0.5)
    policy.prepare_queries(coded)
    with pytest.raises(PrivacyBudgetExceededError, match=r"releasing 4 vectors at epsilon=1 would spend 8 of budget=5"):
        policy.prepare_queries(coded)
    assert policy.accountant.spent == 4.0


def test_policy_queries_needs_bounds():
    mechanism = LaplaceMechanism(epsilon=1.0, sensitivity=3.0)
    with pytest.raises(ValueError, match=r"privacy_placement='queries' clips coded queries to the input range, so the mechanism needs lower and upper"):
        PrivacyPolicy(mechanism, "queries")


def test_policy_rejects_unknown_placement():
    mechanism = LaplaceMechanism(epsilon=1.0, lower=0, upper=1)
    with pytest.raises(ValueError, match=r"privacy_placement must be one of \('outputs', 'queries'\), got privacy_placement='both'"):
        PrivacyPolicy(mechanism, "both")
