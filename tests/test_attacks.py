"""Simulated Byzantine workers: each attack's wrong results, the plan syntax and worker draws."""

import numpy as np
import pytest

from approxifer_onnx.attacks import ATTACK_KINDS, ByzantineAttack, ByzantinePlan
from approxifer_onnx.coding import BerrutCode, locate


def honest_results(groups=4, workers=6, classes=5, seed=0):
    return np.random.default_rng(seed).normal(size=(groups, workers, classes))


def one_wrong_per_group(groups=4, workers=6):
    wrong = np.zeros((groups, workers), dtype=bool)
    wrong[np.arange(groups), np.arange(groups) % workers] = True
    return wrong


@pytest.mark.parametrize("kind", ["gaussian", "sign-flip", "constant", "permuted"])
def test_attack_changes_only_wrong_rows(kind):
    y = honest_results()
    wrong = one_wrong_per_group()

    attacked = ByzantineAttack(kind).corrupt(y, wrong, np.random.default_rng(1))

    np.testing.assert_array_equal(attacked[~wrong], y[~wrong])
    assert (attacked[wrong] != y[wrong]).all()


def test_sign_flip_constant_and_permuted_values():
    y = honest_results()
    wrong = one_wrong_per_group()
    rng = np.random.default_rng(0)

    flipped = ByzantineAttack("sign-flip").corrupt(y, wrong, rng)
    constant = ByzantineAttack("constant", 2.5).corrupt(y, wrong, rng)
    permuted = ByzantineAttack("permuted").corrupt(y, wrong, rng)

    np.testing.assert_array_equal(flipped[wrong], -y[wrong])
    np.testing.assert_array_equal(constant[wrong], 2.5)
    np.testing.assert_array_equal(permuted[wrong], np.roll(y[wrong], 1, axis=1))


@pytest.mark.parametrize("sigma", [1.0, 10.0, 100.0])
def test_gaussian_noise_has_requested_sigma(sigma):
    y = np.zeros((200, 3, 10))
    wrong = np.zeros((200, 3), dtype=bool)
    wrong[:, 1] = True

    attacked = ByzantineAttack("gaussian", sigma).corrupt(y, wrong, np.random.default_rng(2))

    assert np.std(attacked[:, 1]) == pytest.approx(sigma, rel=0.05)
    assert np.abs(np.mean(attacked[:, 1])) < 0.1 * sigma  # about 4.5 standard errors


def test_argmax_flip_is_smallest_change_that_flips():
    # Every worker weighs in every decoded query only on all-coded nodes. With the default
    # "paired" nodes and every raw result present, a parity worker's result is not used.
    code = BerrutCode(6, 0, num_workers=12, nodes="second-kind-open")
    rng = np.random.default_rng(3)
    y = code.encode(rng.normal(size=(5, 6, 4))) @ rng.normal(size=(4, 10))
    matrix = code.decode_matrix(range(12))
    matrices = np.broadcast_to(matrix, (5, 6, 12))
    wrong = np.zeros((5, 12), dtype=bool)
    wrong[:, 7] = True
    honest = np.argmax(matrix @ y, axis=2)

    flipped = ByzantineAttack("argmax-flip", 0.01).corrupt(y, wrong, rng, decode_matrices=matrices)
    change = flipped[:, 7] - y[:, 7]
    almost = y.copy()
    almost[:, 7] += change / 1.01 * 0.98

    assert ((np.argmax(matrix @ flipped, axis=2) != honest).sum(axis=1) == 1).all()
    assert (np.argmax(matrix @ almost, axis=2) == honest).all()
    assert ((change != 0).sum(axis=1) == 2).all()


def test_argmax_flip_found_by_locator():
    code = BerrutCode(6, 0, num_workers=12, nodes="second-kind-open")
    rng = np.random.default_rng(4)
    y = code.encode(rng.normal(size=(5, 6, 4))) @ rng.normal(size=(4, 10))
    matrices = np.broadcast_to(code.decode_matrix(range(12)), (5, 6, 12))
    wrong = np.zeros((5, 12), dtype=bool)
    wrong[:, 3] = True
    attacked = ByzantineAttack("argmax-flip").corrupt(y, wrong, rng, decode_matrices=matrices)

    result = locate(code, attacked, np.ones(12, bool), 2, "reed-solomon")

    assert result.suspected == ((3,),) * 5


def test_argmax_flip_parity_worker_is_harmless():
    code = BerrutCode(6, 0, num_workers=12)
    assert code.node_family == "paired"
    rng = np.random.default_rng(5)
    y = code.encode(rng.normal(size=(5, 6, 4))) @ rng.normal(size=(4, 10))
    matrix = code.decode_matrix(range(12))
    parity = int(np.flatnonzero(~np.isin(code.beta, code.alpha))[0])
    wrong = np.zeros((5, 12), dtype=bool)
    wrong[:, parity] = True

    attacked = ByzantineAttack("argmax-flip").corrupt(
        y, wrong, rng, decode_matrices=np.broadcast_to(matrix, (5, 6, 12)))

    np.testing.assert_array_equal(matrix[:, parity], 0.0)
    np.testing.assert_array_equal(np.argmax(matrix @ attacked, axis=2), np.argmax(matrix @ y, axis=2))


def test_argmax_flip_needs_decode_matrices():
    with pytest.raises(ValueError, match=r"argmax-flip attack needs decode_matrices"):
        ByzantineAttack("argmax-flip").corrupt(honest_results(), one_wrong_per_group(), None)


@pytest.mark.parametrize(
    ("text", "plan"),
    [
        ("gaussian:10@random:2", ByzantinePlan(ByzantineAttack("gaussian", 10.0), count=2)),
        ("sign-flip@0,5", ByzantinePlan(ByzantineAttack("sign-flip"), workers=(0, 5))),
        ("constant:-1@3", ByzantinePlan(ByzantineAttack("constant", -1.0), workers=(3,))),
        ("argmax-flip@random:1", ByzantinePlan(ByzantineAttack("argmax-flip"), count=1)),
    ],
)
def test_plan_parse_and_text_round_trip(text, plan):
    assert ByzantinePlan.parse(text) == plan
    assert ByzantinePlan.parse(plan.to_text()) == plan


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gaussian:10", r"missing @WORKERS"),
        ("noise@1", r"unknown attack 'noise'; choose one of 'gaussian'"),
        ("sign-flip:2@1", r"attack 'sign-flip' takes no parameter"),
        ("gaussian:-1@1", r"sigma must be finite and positive, got sigma=-1.0"),
        ("gaussian@1,1", r"workers must be distinct"),
        ("permuted@random:x", r"random count must be a non-negative integer, got 'x'"),
        ("permuted@1,b", r"worker index must be a non-negative integer, got 'b'"),
        ("permuted@random:0", r"needs wrong workers: pass workers=\(...\) or count >= 1"),
    ],
)
def test_plan_parse_rejects_invalid_text(text, message):
    with pytest.raises(ValueError, match=message):
        ByzantinePlan.parse(text)


def test_plan_names_the_fix_for_bad_workers():
    plan = ByzantinePlan.parse("gaussian:10@20")
    with pytest.raises(ValueError, match="out of range for num_workers=9; use worker indices 0 to 8"):
        plan.draw(np.ones((2, 9), dtype=bool), np.random.default_rng(0))
    plan = ByzantinePlan.parse("gaussian:10@random:20")
    with pytest.raises(ValueError, match="fewer than the count=20 .*; lower the count or add"):
        plan.draw(np.ones((2, 9), dtype=bool), np.random.default_rng(0))


def test_every_kind_parses():
    for kind in ATTACK_KINDS:
        assert ByzantinePlan.parse(f"{kind}@0").attack.kind == kind


def test_draw_fixed_workers_only_when_available():
    available = np.ones((3, 6), dtype=bool)
    available[1, 2] = False
    plan = ByzantinePlan.parse("sign-flip@2,4")

    wrong = plan.draw(available, np.random.default_rng(0))

    np.testing.assert_array_equal(wrong[0], [0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(wrong[1], [0, 0, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r"Byzantine worker 4 is out of range for num_workers=4"):
        plan.draw(np.ones((1, 4), dtype=bool), np.random.default_rng(0))


def test_draw_random_count_among_available():
    available = np.random.default_rng(5).random((50, 8)) < 0.8
    available[:, :3] = True
    plan = ByzantinePlan.parse("gaussian:1@random:3")

    wrong = plan.draw(available, np.random.default_rng(6))

    np.testing.assert_array_equal(wrong.sum(axis=1), 3)
    assert not (wrong & ~available).any()
    assert wrong.any(axis=0).all()  # every worker is drawn in some group
    with pytest.raises(ValueError, match=r"group 0 has 2 available workers, fewer than the count"):
        plan.draw(np.array([[True, True, False]]), np.random.default_rng(0))
