"""Error locators on exact synthetic data: thresholds, honest runs, edge nodes and validation.

Exact data comes from an affine "model" f(x) = x W + b applied to Berrut-coded queries: then
every output class is exactly the Berrut rational P(z) / D(z) that the locators assume.
"""

import warnings
from fractions import Fraction

import numpy as np
import pytest

from approxifer_onnx.coding import BerrutCode
from approxifer_onnx.coding.locators import (
    LOCATORS,
    calibrate_tolerance,
    check_num_workers,
    denominator_values,
    locate,
    required_results,
    required_workers,
)

CODE_LOCATORS = ["welch", "berrut-rational", "reed-solomon", "joint", "subset-search"]
# Locators whose threshold random corruption already reaches: below it they fail only against
# wrong results built to fit another rational (see the subset-search tests).
POLYNOMIAL_LOCATORS = CODE_LOCATORS[:-1]

# (K, E, S, node family, classes C): K = 8 and 12 with E = 1..3 as in the ApproxIFER
# Byzantine experiments, a few stragglers, every node family, one single-output case, a small K.
SETTINGS = [
    (8, 1, 0, "second-kind-open", 10),
    (8, 3, 1, "second-kind", 10),
    (12, 2, 2, "first-kind", 3),
    (12, 3, 1, "second-kind-open", 10),
    (5, 2, 0, "second-kind", 1),
]

ATTACKS = ["gaussian", "sign-flip", "constant", "permuted", "one-class"]
# Attacks that change every class: the random-corruption model behind the joint count.
EVERY_CLASS_ATTACKS = ATTACKS[:-1]


def affine_results(code, groups, classes, rng):
    """Return (G, N, C) results of an affine model on coded queries: exact Berrut rationals."""
    queries = rng.normal(size=(groups, code.k, 4))
    weights = rng.normal(size=(4, classes))
    bias = rng.normal(size=classes)
    return code.encode(queries) @ weights + bias


def corrupt(results, attack, rng):
    """Return a wrong copy of one worker's (C,) results."""
    if attack == "gaussian":
        return results + rng.normal(size=results.shape)
    if attack == "sign-flip":
        return -results
    if attack == "constant":
        return np.full_like(results, 3.0)
    if attack == "permuted":
        return np.roll(results, 1)
    wrong = results.copy()
    wrong[rng.integers(results.size)] += 1e-3
    return wrong


def draw_trials(code, groups, classes, stragglers, wrong_count, rng, attacks=ATTACKS):
    """Draw results with random stragglers and `wrong_count` wrong workers per group.

    Returns (y, available, truth) with truth the sorted wrong workers of each group.
    """
    y = affine_results(code, groups, classes, rng)
    available = np.ones((groups, code.num_workers), dtype=bool)
    truth = []
    for group in range(groups):
        order = rng.permutation(code.num_workers)
        available[group, order[:stragglers]] = False
        y[group, order[:stragglers]] = np.nan  # a straggler's row must never be read
        wrong = order[stragglers : stragglers + wrong_count]
        for worker in wrong:
            # Permuting a single class changes nothing.
            usable = [name for name in attacks if classes > 1 or name != "permuted"]
            attack = usable[rng.integers(len(usable))]
            y[group, worker] = corrupt(y[group, worker], attack, rng)
        truth.append(tuple(sorted(int(worker) for worker in wrong)))
    return y, available, truth


def code_for(locator, k, byzantine, stragglers, family, classes, missing=0):
    num_workers = required_workers(locator, k, stragglers, byzantine, num_outputs=classes)
    return BerrutCode(k, stragglers, num_workers=num_workers - missing, nodes=family)


def exact_denominator(z, alpha):
    """D(z) = sum_j (-1)^j prod_{i != j} (z - alpha_i) in rational arithmetic."""
    z = Fraction(z)
    nodes = [Fraction(a) for a in sorted(alpha, reverse=True)]
    total = Fraction(0)
    for j in range(len(nodes)):
        product = Fraction((-1) ** j)
        for i, node in enumerate(nodes):
            if i != j:
                product *= z - node
        total += product
    return total


# --- counts and validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("locator", "results"),
    [
        ("welch", 2 * 8 + 2 * 3 - 1),
        ("berrut-rational", 8 + 2 * 3 + 1),
        ("reed-solomon", 8 + 2 * 3),
        ("joint", 8 + 3 + 1),  # ceil(E / C) = ceil(3 / 10)
        ("subset-search", 8 + 2 * 3),
        ("median", 8 + 3),
    ],
)
def test_required_counts(locator, results):
    assert required_results(locator, 8, 3, num_outputs=10) == results
    assert required_workers(locator, 8, 2, 3, num_outputs=10) == results + 2
    assert required_results(locator, 8, 0) == 8


def test_joint_without_classes_uses_reed_solomon_bound():
    assert required_results("joint", 12, 3) == 12 + 2 * 3
    assert required_results("joint", 12, 3, num_outputs=1) == 12 + 2 * 3
    assert required_results("joint", 12, 3, num_outputs=2) == 12 + 3 + 2


def test_check_num_workers_states_inequality():
    with pytest.raises(
        ValueError,
        match=r"byzantine=3 needs at least 2\*K\+2\*E\+S-1 = 21 workers .*got num_workers=17",
    ):
        check_num_workers("welch", 8, 0, 3, 17)
    with pytest.raises(ValueError, match=r"K\+2\*E\+S = 16 workers .*got num_workers=15"):
        check_num_workers("reed-solomon", 8, 2, 3, 15)
    assert check_num_workers("reed-solomon", 8, 2, 3, 16) == 16


def test_unknown_locator_lists_choices():
    with pytest.raises(ValueError, match=r"unknown locator 'berlekamp'; choose one of 'welch'"):
        required_results("berlekamp", 8, 1)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"byzantine": -1}, ValueError, r"byzantine must be at least 0, got byzantine=-1"),
        ({"byzantine": True}, TypeError, r"byzantine must be an int, got bool True"),
        ({"min_gap": 1.0}, ValueError, r"min_gap must be a number greater than 1"),
        ({"tolerance": -1e-3}, ValueError, r"tolerance must be non-negative"),
        ({"available": np.ones(9)}, TypeError, r"available must be a boolean mask"),
        ({"available": np.ones(8, bool)}, ValueError, r"available must have shape \(N,\) = \(9,\)"),
        ({"y": np.zeros((2, 8, 3))}, ValueError, r"y must have shape \(groups, N=9, classes\)"),
    ],
)
def test_locate_rejects_invalid_arguments(arguments, error, message):
    code = BerrutCode(5, 0, num_workers=9)
    call = {"y": np.zeros((2, 9, 3)), "available": np.ones(9, bool), "byzantine": 1}
    call.update(arguments)
    with pytest.raises(error, match=message):
        locate(code, **call)


def test_locate_rejects_non_finite_available_result():
    code = BerrutCode(5, 0, num_workers=9)
    y = np.zeros((2, 9, 3))
    y[1, 4, 0] = np.inf
    with pytest.raises(ValueError, match=r"available worker 4 in group 1 is not finite"):
        locate(code, y, np.ones(9, bool), 1)


def test_locate_rejects_code_without_nodes():
    with pytest.raises(TypeError, match=r"code must be a BerrutCode or a pair \(alpha, beta\)"):
        locate("nodes", np.zeros((1, 9)), np.ones(9, bool), 1)


# --- the denominator D ---------------------------------------------------------------------


def test_denominator_matches_exact_evaluation():
    alpha = BerrutCode(7, 0).alpha
    z = np.linspace(-1, 1, 13)

    computed = denominator_values(alpha, z)

    expected = [float(exact_denominator(point, alpha)) for point in z]
    np.testing.assert_allclose(computed, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k", [4, 8, 12])
def test_results_times_denominator_are_polynomials(k):
    # The fact every code-based locator rests on: y * D has degree K - 1 for an affine model.
    code = BerrutCode(k, 0, num_workers=3 * k)
    y = affine_results(code, 1, 2, np.random.default_rng(k))[0]
    products = y * denominator_values(code.alpha, code.beta)[:, None]

    for c in range(2):
        fit = np.polynomial.chebyshev.Chebyshev.fit(code.beta, products[:, c], k - 1)
        np.testing.assert_allclose(fit(code.beta), products[:, c], rtol=0, atol=1e-12)
        lower = np.polynomial.chebyshev.Chebyshev.fit(code.beta, products[:, c], k - 2)
        assert np.max(np.abs(lower(code.beta) - products[:, c])) > 1e-6


# --- locating on exact data -----------------------------------------------------------------


@pytest.mark.parametrize("locator", CODE_LOCATORS)
@pytest.mark.parametrize(("k", "byzantine", "stragglers", "family", "classes"), SETTINGS)
def test_finds_every_wrong_worker_at_threshold(locator, k, byzantine, stragglers, family, classes):
    code = code_for(locator, k, byzantine, stragglers, family, classes)
    rng = np.random.default_rng(k * 100 + byzantine * 10 + stragglers)
    attacks = EVERY_CLASS_ATTACKS if locator == "joint" else ATTACKS

    for wrong_count in range(byzantine + 1):
        y, available, truth = draw_trials(
            code, 12, classes, stragglers, wrong_count, rng, attacks
        )

        result = locate(code, y, available, byzantine, locator)

        assert list(result.suspected) == truth
        np.testing.assert_array_equal(result.estimated_errors, wrong_count)
        assert result.consistent.all()


@pytest.mark.parametrize("locator", POLYNOMIAL_LOCATORS)
@pytest.mark.parametrize(("k", "byzantine", "stragglers", "family", "classes"), SETTINGS)
def test_fails_one_result_below_threshold(locator, k, byzantine, stragglers, family, classes):
    code = code_for(locator, k, byzantine, stragglers, family, classes, missing=1)
    rng = np.random.default_rng(k * 100 + byzantine * 10 + stragglers)
    attacks = EVERY_CLASS_ATTACKS if locator == "joint" else ATTACKS
    y, available, truth = draw_trials(code, 50, classes, stragglers, byzantine, rng, attacks)

    with pytest.warns(UserWarning, match=rf"needs .* results to locate byzantine={byzantine}"):
        result = locate(code, y, available, byzantine, locator)

    found = np.mean([suspects == wrong for suspects, wrong in zip(result.suspected, truth)])
    assert found < 0.6


@pytest.mark.parametrize("locator", list(LOCATORS))
@pytest.mark.parametrize(("k", "byzantine", "stragglers", "family", "classes"), SETTINGS)
def test_keeps_honest_workers_when_nobody_lies(
    locator, k, byzantine, stragglers, family, classes
):
    code = code_for(locator, k, byzantine, stragglers, family, classes)
    rng = np.random.default_rng(3)
    y, available, _ = draw_trials(code, 12, classes, stragglers, 0, rng)

    result = locate(code, y, available, byzantine, locator)

    assert result.suspected == ((),) * 12
    np.testing.assert_array_equal(result.estimated_errors, 0)
    np.testing.assert_array_equal(result.trusted, available)


@pytest.mark.parametrize("byzantine", [2, 3])
def test_joint_one_class_errors_need_reed_solomon_count(byzantine):
    # The shared count K + E + ceil(E / C) assumes that every class of a wrong result is wrong,
    # so errors confined to one class defeat it. The Reed-Solomon count K + 2E covers any errors.
    rng = np.random.default_rng(byzantine)
    found = {}
    for num_outputs in (10, None):
        num_workers = required_workers("joint", 8, 0, byzantine, num_outputs=num_outputs)
        code = BerrutCode(8, 0, num_workers=num_workers)
        y = affine_results(code, 20, 10, rng)
        truth = []
        for group in range(20):
            wrong = rng.choice(num_workers, byzantine, replace=False)
            y[group, wrong, rng.integers(10)] += 1.0
            truth.append(tuple(sorted(int(worker) for worker in wrong)))

        result = locate(code, y, np.ones(num_workers, bool), byzantine, "joint")

        found[num_outputs] = np.mean([a == b for a, b in zip(result.suspected, truth)])
    assert found[None] == 1.0
    assert found[10] < 0.6


@pytest.mark.parametrize("locator", CODE_LOCATORS)
@pytest.mark.parametrize("byzantine", [1, 2, 3])
def test_finds_wrong_worker_at_zero_node(locator, byzantine):
    # An odd count of second-kind nodes cos(i pi / (N - 1)) puts the middle worker at z = 0,
    # where a locator normalised by its constant term Q(0) = 1 cannot have a root.
    num_workers = required_workers(locator, 8, 0, byzantine, num_outputs=10)
    num_workers += 1 - num_workers % 2
    code = BerrutCode(8, 0, num_workers=num_workers, nodes="second-kind")
    middle = num_workers // 2
    assert code.beta[middle] == pytest.approx(0.0, abs=1e-15)
    rng = np.random.default_rng(byzantine)
    y = affine_results(code, 4, 10, rng)
    others = [1, num_workers - 2][: byzantine - 1]
    wrong = sorted([middle, *others])
    y[:, wrong] += rng.normal(size=(4, len(wrong), 10))

    result = locate(code, y, np.ones(num_workers, bool), byzantine, locator)

    assert result.suspected == (tuple(wrong),) * 4


@pytest.mark.parametrize("locator", CODE_LOCATORS)
def test_worker_nodes_equal_to_query_nodes(locator):
    # N = 2K open second-kind nodes: every odd worker node equals a query node.
    code = BerrutCode(6, 0, num_workers=24, nodes="second-kind-open")
    assert code.exact_queries(np.ones(24, bool)).all()
    rng = np.random.default_rng(11)
    y = affine_results(code, 3, 4, rng)
    y[:, [1, 3, 10]] = -y[:, [1, 3, 10]]

    result = locate(code, y, np.ones(24, bool), 3, locator)

    assert result.suspected == ((1, 3, 10),) * 3


@pytest.mark.parametrize("locator", CODE_LOCATORS)
def test_reports_more_wrong_than_byzantine(locator):
    code = code_for(locator, 8, 1, 0, "second-kind-open", 10)
    rng = np.random.default_rng(5)
    y = affine_results(code, 6, 10, rng)
    y[:, [2, 9]] += rng.normal(size=(6, 2, 10))

    result = locate(code, y, np.ones(code.num_workers, bool), 1, locator)

    assert not result.consistent.any()
    assert (result.residuals[:, 1] > 1e-6).all()


def test_stragglers_are_never_suspected():
    code = code_for("reed-solomon", 8, 2, 3, "second-kind-open", 10)
    rng = np.random.default_rng(2)
    y, available, truth = draw_trials(code, 20, 10, 3, 2, rng)

    result = locate(code, y, available, 2, "reed-solomon")

    for group, suspects in enumerate(result.suspected):
        assert available[group, list(suspects)].all()
        assert not result.trusted[group, list(suspects)].any()
    assert list(result.suspected) == truth
    np.testing.assert_array_equal(result.trusted.sum(axis=1), code.num_workers - 3 - 2)


@pytest.mark.parametrize("locator", ["joint", "subset-search"])
def test_groups_match_one_call_per_group(locator):
    code = code_for(locator, 12, 3, 2, "second-kind-open", 10)
    rng = np.random.default_rng(8)
    y, available, _ = draw_trials(code, 8, 10, 2, 2, rng)
    y[:, :, :] += 1e-3 * rng.normal(size=y.shape)  # residuals well above rounding error

    together = locate(code, y, available, 3, locator, tolerance=1e-2)

    for group in range(8):
        alone = locate(code, y[group : group + 1], available[group], 3, locator, tolerance=1e-2)
        assert alone.suspected[0] == together.suspected[group]
        np.testing.assert_allclose(alone.residuals[0], together.residuals[group], rtol=1e-9)


def test_nodes_pair_gives_same_suspects_as_code():
    code = code_for("welch", 8, 2, 0, "second-kind", 3)
    rng = np.random.default_rng(4)
    y, available, truth = draw_trials(code, 5, 3, 0, 2, rng)

    result = locate((code.alpha, code.beta), y, available, 2, "welch")

    assert list(result.suspected) == truth


def test_no_locating_without_byzantine():
    code = BerrutCode(4, 1)
    y = np.arange(15.0).reshape(1, 5, 3)

    result = locate(code, y, np.ones(5, bool), 0)

    assert result.suspected == ((),)
    assert result.residuals.shape == (1, 1)
    np.testing.assert_array_equal(result.trusted, np.ones((1, 5), bool))


# --- approximate data and the baseline -----------------------------------------------------


def test_approximate_data_uses_tolerance_then_gap():
    code = code_for("reed-solomon", 8, 2, 0, "second-kind-open", 10)
    rng = np.random.default_rng(6)
    y = affine_results(code, 10, 10, rng)
    y += 1e-5 * rng.normal(size=y.shape)  # honest "interpolation error"
    y[:, [4, 11]] += rng.normal(size=(10, 2, 10))
    available = np.ones(code.num_workers, bool)

    exact_tolerance = locate(code, y, available, 2, "reed-solomon")
    relative = locate(code, y, available, 2, "reed-solomon", tolerance=1e-3)

    # No fit within the default (exact) tolerance: the residual drop finds both workers.
    assert not exact_tolerance.consistent.any()
    assert exact_tolerance.suspected == ((4, 11),) * 10
    assert relative.consistent.all()
    assert relative.suspected == ((4, 11),) * 10


def test_median_finds_large_corruption():
    code = code_for("median", 8, 2, 1, "second-kind-open", 10)
    rng = np.random.default_rng(9)
    y = affine_results(code, 10, 10, rng)
    y[:, [2, 7]] += 100 * rng.normal(size=(10, 2, 10))
    available = np.ones(code.num_workers, bool)
    available[4] = False
    y[:, 4] = np.nan

    result = locate(code, y, available, 2, "median")

    assert result.suspected == ((2, 7),) * 10
    assert result.consistent.all()


def test_median_misses_small_corruption():
    # The baseline ignores the code: a change of 0.1 in every class hides among honest results
    # that differ by more, while a code-based locator finds it.
    code = code_for("joint", 8, 1, 0, "second-kind-open", 10)
    rng = np.random.default_rng(10)
    y = affine_results(code, 10, 10, rng)
    y[:, 5] += 0.1
    available = np.ones(code.num_workers, bool)

    median = locate(code, y, available, 1, "median")
    joint = locate(code, y, available, 1, "joint")

    assert median.suspected == ((),) * 10
    assert joint.suspected == ((5,),) * 10


def logit_like_results(rng, groups, workers=12, classes=10):
    """Return honest results shaped like a classifier's logits: each is high in one class only."""
    y = rng.normal(size=(groups, workers, classes))
    peaks = rng.integers(classes, size=(groups, workers, 1))
    np.put_along_axis(y, peaks, 12.0, axis=2)
    return y


def test_median_ignores_one_class_peaks():
    code = BerrutCode(8, 0, num_workers=12)
    rng = np.random.default_rng(21)
    tolerance = calibrate_tolerance(code, logit_like_results(rng, 300), "median", byzantine=1,
                                    quantile=0.99, rng=0)
    y = logit_like_results(rng, 100)
    wrong = rng.integers(12, size=100)
    y[np.arange(100), wrong] += rng.normal(scale=10.0, size=(100, 10))
    clean = locate(code, logit_like_results(rng, 100), np.ones(12, bool), 1, "median",
                   tolerance=tolerance)

    result = locate(code, y, np.ones(12, bool), 1, "median", tolerance=tolerance)

    assert result.suspected == tuple((int(worker),) for worker in wrong)
    assert np.mean(clean.estimated_errors == 0) >= 0.95


# --- subset search and calibration -----------------------------------------------------------


def forged_results(code, groups, classes, byzantine, rng):
    """Return exact results whose E wrong ones fit another rational, and the wrong workers.

    The forged rational agrees with the honest one at the K - 1 first workers after the wrong
    ones, so with K + 2E - 1 results removing E other honest workers leaves a perfect fit too.
    """
    y = affine_results(code, groups, classes, rng)
    products = y * denominator_values(code.alpha, code.beta)[None, :, None]
    wrong = np.arange(byzantine)
    agree = np.arange(byzantine, byzantine + code.k - 1)
    anchor = byzantine + code.k - 1  # the honest worker the forged rational moves
    for group in range(groups):
        for c in range(classes):
            honest = np.polynomial.chebyshev.Chebyshev.fit(code.beta, products[group, :, c], code.k - 1)
            points = np.append(code.beta[agree], code.beta[anchor])
            values = np.append(honest(code.beta[agree]), honest(code.beta[anchor]) + 1.0)
            forged = np.polynomial.chebyshev.Chebyshev.fit(points, values, code.k - 1)
            y[group, wrong, c] = forged(code.beta[wrong]) / denominator_values(
                code.alpha, code.beta[wrong]
            )
    return y, tuple(int(worker) for worker in wrong)


def fits_exactly(code, y, removed):
    """True when y * D without the removed workers is a polynomial of degree K - 1."""
    keep = np.setdiff1d(np.arange(code.num_workers), removed)
    products = y[keep] * denominator_values(code.alpha, code.beta[keep])[:, None]
    fit = np.polynomial.chebyshev.chebfit(code.beta[keep], products, code.k - 1)
    error = np.polynomial.chebyshev.chebval(code.beta[keep], fit).T - products
    return np.max(np.abs(error)) < 1e-8 * np.max(np.abs(products))


@pytest.mark.parametrize(("k", "byzantine"), [(8, 1), (8, 2), (12, 3)])
def test_subset_search_threshold_against_forged_results(k, byzantine):
    # With K + 2E results the forged ones are found. With one fewer, removing E honest
    # workers instead leaves an exact fit too: the same results could come from honest
    # workers on the forged rational, so no locator can tell which E workers lied.
    rng = np.random.default_rng(k + byzantine)
    for missing in (0, 1):
        code = BerrutCode(k, 0, num_workers=k + 2 * byzantine - missing)
        y, wrong = forged_results(code, 10, 3, byzantine, rng)
        decoy = tuple(range(byzantine + k - 1, code.num_workers))  # the moved honest workers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = locate(code, y, np.ones(code.num_workers, bool), byzantine, "subset-search")

        assert fits_exactly(code, y[0], wrong)
        if missing:
            assert len(decoy) == byzantine
            assert fits_exactly(code, y[0], decoy)
        else:
            assert not fits_exactly(code, y[0], decoy[:byzantine])
            assert result.suspected == (wrong,) * 10


@pytest.mark.parametrize(("k", "byzantine"), [(8, 2), (8, 3), (12, 3)])
def test_subset_search_random_corruption_count(k, byzantine):
    # Random wrong results fit no rational of degree K - 1 together with honest ones, so
    # K + E + 1 results locate them. With K + E, every removal of E results leaves an exact fit.
    rng = np.random.default_rng(k * byzantine)
    found = {}
    for num_workers in (k + byzantine + 1, k + byzantine):
        code = BerrutCode(k, 0, num_workers=num_workers)
        y, _, truth = draw_trials(code, 20, 10, 0, byzantine, rng, EVERY_CLASS_ATTACKS)
        with pytest.warns(UserWarning, match="needs K\\+2\\*E"):
            result = locate(code, y, np.ones(num_workers, bool), byzantine, "subset-search")
        found[num_workers] = np.mean([a == b for a, b in zip(result.suspected, truth)])
    assert found[k + byzantine + 1] == 1.0
    assert found[k + byzantine] < 0.6


def test_subset_search_falls_back_to_byzantine_count():
    # Two wrong results but E = 1: no removal fits, so the best single suspect is dropped.
    code = code_for("subset-search", 8, 1, 0, "second-kind-open", 10)
    rng = np.random.default_rng(12)
    y = affine_results(code, 6, 10, rng)
    y[:, [2, 9]] += 10 * rng.normal(size=(6, 2, 10))

    result = locate(code, y, np.ones(code.num_workers, bool), 1, "subset-search")

    assert not result.consistent.any()
    np.testing.assert_array_equal(result.estimated_errors, 1)


@pytest.mark.parametrize("locator", ["subset-search", "reed-solomon", "median"])
def test_calibrated_tolerance_keeps_honest_workers(locator):
    # Approximate data: honest results carry noise that the exact default tolerance rejects.
    code = BerrutCode(8, 0, num_workers=20)
    rng = np.random.default_rng(13)
    clean = affine_results(code, 200, 10, rng) + 1e-2 * rng.normal(size=(200, 20, 10))
    served = affine_results(code, 100, 10, rng) + 1e-2 * rng.normal(size=(100, 20, 10))
    available = np.ones(20, bool)

    tolerance = calibrate_tolerance(code, clean, locator, byzantine=2, quantile=1.0, rng=0)
    calibrated = locate(code, served, available, 2, locator, tolerance=tolerance)
    exact = locate(code, served, available, 2, locator)

    assert tolerance > 0
    assert np.mean(calibrated.estimated_errors == 0) >= 0.95
    if locator == "subset-search":
        assert (exact.estimated_errors > 0).all()


def test_calibrated_subset_search_finds_noisy_wrong_workers():
    code = BerrutCode(8, 0, num_workers=20)
    rng = np.random.default_rng(14)
    clean = affine_results(code, 200, 10, rng) + 1e-2 * rng.normal(size=(200, 20, 10))
    tolerance = calibrate_tolerance(code, clean, "subset-search", byzantine=2, quantile=0.99,
                                    rng=1)
    y = affine_results(code, 100, 10, rng) + 1e-2 * rng.normal(size=(100, 20, 10))
    truth = []
    for group in range(100):
        wrong = rng.choice(20, 2, replace=False)
        y[group, wrong] += rng.normal(size=(2, 10))
        truth.append(tuple(sorted(int(worker) for worker in wrong)))

    result = locate(code, y, np.ones(20, bool), 2, "subset-search", tolerance=tolerance)

    assert list(result.suspected) == truth


def test_calibrate_tolerance_quantile_orders():
    code = BerrutCode(6, 0, num_workers=14)
    rng = np.random.default_rng(15)
    clean = affine_results(code, 50, 4, rng) + 1e-3 * rng.normal(size=(50, 14, 4))

    low = calibrate_tolerance(code, clean, "subset-search", quantile=0.5, rng=0)
    high = calibrate_tolerance(code, clean, "subset-search", quantile=1.0, rng=0)
    exact = calibrate_tolerance(code, affine_results(code, 50, 4, rng), "subset-search",
                                quantile=1.0)

    assert 0 < low < high
    assert exact < 1e-10


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"quantile": 0.0}, ValueError, r"quantile must be a number in \(0, 1\], got quantile=0.0"),
        ({"byzantine": 5}, ValueError, r"group 0 has 5 available results, too few to remove"),
        ({"byzantine": 1.5}, TypeError, r"byzantine must be an int"),
        ({"locator": "vote"}, ValueError, r"unknown locator 'vote'"),
    ],
)
def test_calibrate_tolerance_rejects_invalid_arguments(arguments, error, message):
    code = BerrutCode(3, 0, num_workers=5)
    with pytest.raises(error, match=message):
        calibrate_tolerance(code, np.zeros((2, 5, 3)), **arguments)
