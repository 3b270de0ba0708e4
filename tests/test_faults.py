"""Tests of the fault plans, their text form, their draws and how a worker applies a fault."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from approxifer_onnx.faults import (
    DelayDistribution,
    FaultKind,
    FaultPlan,
    InjectedFaultError,
    RunCancelledError,
    WorkerFault,
    apply_fault,
)

# Generous upper bound, in seconds, for work that should take milliseconds. It only guards against
# a wait that never ends, because the test machine is shared and its timing is noisy.
PROMPTLY = 5.0


# Text forms and the plans they describe.
PARSE_CASES = [
    ("workers=2,5;delay=0.5", FaultPlan(delays={2: 0.5, 5: 0.5})),
    ("p=0.05;delay=exp:0.2", FaultPlan(probability=0.05, random_delay=DelayDistribution.exponential(0.2))),
    ("count=1;delay=hang", FaultPlan(count=1, random_delay=DelayDistribution.hang())),
    ("fail=3", FaultPlan(fail=(3,))),
    ("nonfinite=1", FaultPlan(nonfinite=(1,))),
    ("hang=0,4", FaultPlan(hang=(0, 4))),
    ("workers=1;delay=hang", FaultPlan(hang=(1,))),
    ("count=2;delay=pareto:0.1:1.5", FaultPlan(count=2, random_delay=DelayDistribution.pareto(0.1, 1.5))),
    ("p=1;delay=lognormal:0.2:0.5", FaultPlan(probability=1.0, random_delay=DelayDistribution.lognormal(0.2, 0.5))),
    (" workers = 0 ; count = 1 ; delay = 0.25 ; fail = 2 ; ",
     FaultPlan(delays={0: 0.25}, count=1, random_delay=DelayDistribution.fixed(0.25), fail=(2,))),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_builds_expected_plan(text, expected):
    assert FaultPlan.parse(text) == expected


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_to_text_round_trips(text, expected):
    assert FaultPlan.parse(expected.to_text()) == expected


# Invalid text and the part of the message that names the problem.
PARSE_ERRORS = [
    ("", "the plan is empty"),
    ("fail", r"clause 'fail' is not KEY=VALUE"),
    ("fail=", r"clause 'fail=' is not KEY=VALUE"),
    ("slow=1", r"unknown key 'slow' in clause 'slow=1'; keys are workers, p, count"),
    ("fail=1;fail=2", r"key 'fail' appears twice"),
    ("fail=one", r"fail=one: 'one' is not an integer"),
    ("hang=1,x", r"hang=1,x: 'x' is not an integer"),
    ("count=1", r"workers=, p= and count= need a delay="),
    ("workers=1", r"workers=, p= and count= need a delay="),
    ("delay=0.5", r"delay= is set but no late workers are chosen"),
    ("workers=1;delay=exp:0.2", r"workers= takes delay=SECONDS or delay=hang, got delay=exp:0.2"),
    ("count=1;delay=gamma:1", r"unknown distribution 'gamma'"),
    ("count=1;delay=exp", r"exp takes 1 parameter\(s\), got 0"),
    ("count=1;delay=pareto:0.1", r"pareto takes 2 parameter\(s\), got 1"),
    ("count=1;delay=soon", r"delay=soon: 'soon' is not a number"),
    ("count=1;delay=-1", r"fixed delay scale \(seconds\) must be finite and > 0, got -1.0"),
    ("count=1;delay=pareto:0.1:0", r"pareto tail index alpha must be finite and > 0, got 0.0"),
    ("p=1.5;delay=1", r"probability must be in \[0, 1\], got 1.5"),
    ("p=-0.1;delay=1", r"probability must be finite and >= 0, got -0.1"),
    ("p=0.5;count=1;delay=1", r"probability=0.5 and count=1 are both set"),
    ("fail=-1", r"fail names worker -1; worker indices start at 0"),
    ("fail=1;hang=1", r"worker 1 is in both fail and hang; give each worker one fixed fault"),
    ("fail=1,1", r"fail names a worker twice: \[1, 1\]"),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_rejects_invalid_text(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        FaultPlan.parse(text)
    assert f"invalid fault plan {text!r}" in str(caught.value)
    assert "fault plan grammar" in str(caught.value)


def test_parse_rejects_non_string():
    with pytest.raises(TypeError, match="fault plan must be a string, got int"):
        FaultPlan.parse(3)


def test_to_text_rejects_unequal_fixed_delays():
    plan = FaultPlan(delays={0: 0.1, 1: 0.2})
    with pytest.raises(ValueError, match=r"fixed delays \{0: 0.1, 1: 0.2\} differ between workers"):
        plan.to_text()


def test_plan_rejects_invalid_fields():
    with pytest.raises(TypeError, match="must name workers by int index, got True"):
        FaultPlan(fail=(True,))
    with pytest.raises(TypeError, match="must be a collection of worker indices, got '12'"):
        FaultPlan(hang="12")
    with pytest.raises(ValueError, match=r"delays\[0\] \(seconds\) must be finite and > 0, got 0.0"):
        FaultPlan(delays={0: 0.0})
    with pytest.raises(ValueError, match=r"delays\[0\] \(seconds\) must be finite and > 0, got inf"):
        FaultPlan(delays={0: math.inf})
    with pytest.raises(ValueError, match="worker 2 is in both delays and nonfinite"):
        FaultPlan(delays={2: 1.0}, nonfinite=(2,))
    with pytest.raises(ValueError, match="needs random_delay"):
        FaultPlan(count=1)
    with pytest.raises(ValueError, match="random_delay is set but probability and count are 0"):
        FaultPlan(random_delay=DelayDistribution.fixed(1.0))
    with pytest.raises(TypeError, match="count must be an int, got 1.5"):
        FaultPlan(count=1.5, random_delay=DelayDistribution.fixed(1.0))


def test_validate_rejects_worker_beyond_num_workers():
    plan = FaultPlan(fail=(1,), hang=(5,))
    with pytest.raises(ValueError, match=r"names worker 5, but num_workers=4; workers are numbered 0..3"):
        plan.validate(4)
    plan.validate(6)


def test_validate_rejects_count_above_free_workers():
    plan = FaultPlan(count=3, random_delay=DelayDistribution.fixed(1.0), fail=(0, 1))
    with pytest.raises(ValueError, match=r"count=3 exceeds the 2 of num_workers=4 workers without a fixed fault"):
        plan.validate(4)
    plan.validate(5)


def test_draw_applies_fixed_faults():
    plan = FaultPlan(delays={0: 0.5}, fail=(1,), hang=(2,), nonfinite=(3,))
    faults = plan.draw(5, rng=0)
    assert faults == [
        WorkerFault(FaultKind.DELAY, 0.5),
        WorkerFault(FaultKind.FAIL),
        WorkerFault(FaultKind.HANG),
        WorkerFault(FaultKind.NONFINITE),
        WorkerFault(FaultKind.NONE),
    ]


def test_draw_count_picks_exactly_count_free_workers():
    num_workers = 5
    calls = 2000
    plan = FaultPlan(count=1, random_delay=DelayDistribution.fixed(0.3), fail=(0,))
    rng = np.random.default_rng(20240611)
    chosen = np.zeros(num_workers, dtype=int)
    for _ in range(calls):
        faults = plan.draw(num_workers, rng)
        late = [worker for worker, fault in enumerate(faults) if fault.kind is FaultKind.DELAY]
        assert len(late) == 1
        assert faults[0] == WorkerFault(FaultKind.FAIL)
        assert faults[late[0]].delay == 0.3
        chosen[late[0]] += 1

    # Each of the 4 free workers is chosen with probability 1/4: allow 5 binomial standard deviations.
    assert chosen[0] == 0
    spread = 5 * math.sqrt(calls * 0.25 * 0.75)
    assert np.all(np.abs(chosen[1:] - calls / 4) < spread), chosen


def test_draw_probability_frequency_within_binomial_bound():
    num_workers = 6
    calls = 500
    probability = 0.5
    plan = FaultPlan(probability=probability, random_delay=DelayDistribution.hang())
    rng = np.random.default_rng(7)
    hangs = sum(
        fault.kind is FaultKind.HANG for _ in range(calls) for fault in plan.draw(num_workers, rng)
    )
    trials = calls * num_workers
    spread = 5 * math.sqrt(trials * probability * (1 - probability))
    assert abs(hangs - trials * probability) < spread


def test_draw_is_repeatable_with_seed():
    plan = FaultPlan(probability=0.3, random_delay=DelayDistribution.exponential(0.1))
    first = [plan.draw(8, rng) for rng in [np.random.default_rng(3)] for _ in range(20)]
    second = [plan.draw(8, rng) for rng in [np.random.default_rng(3)] for _ in range(20)]
    assert first == second
    assert any(fault.is_fault for faults in first for fault in faults)


def test_draw_rejects_invalid_num_workers():
    with pytest.raises(ValueError, match="num_workers must be an int >= 1, got 0"):
        FaultPlan().draw(0)


def test_delay_samples_match_distribution():
    rng = np.random.default_rng(11)
    size = 20000

    assert np.all(DelayDistribution.fixed(0.25).sample(rng, 10) == 0.25)
    assert np.all(np.isinf(DelayDistribution.hang().sample(rng, 3)))

    exponential = DelayDistribution.exponential(0.2).sample(rng, size)
    assert abs(exponential.mean() - 0.2) < 0.01

    # Pareto with minimum 0.1 and alpha 3 has mean alpha * minimum / (alpha - 1) = 0.15.
    pareto = DelayDistribution.pareto(0.1, 3.0).sample(rng, size)
    assert pareto.min() >= 0.1
    assert abs(pareto.mean() - 0.15) < 0.005

    lognormal = DelayDistribution.lognormal(0.2, 0.5).sample(rng, size)
    assert abs(np.median(lognormal) - 0.2) < 0.01
    assert abs(np.log(lognormal).std() - 0.5) < 0.02


def test_delay_distribution_rejects_invalid_values():
    with pytest.raises(ValueError, match="delay family='gamma' is invalid"):
        DelayDistribution("gamma", 1.0)
    with pytest.raises(ValueError, match=r"exponential delay scale \(seconds\) must be finite and > 0, got 0.0"):
        DelayDistribution.exponential(0.0)
    with pytest.raises(ValueError, match="a 'fixed' delay takes no shape, got shape=2"):
        DelayDistribution("fixed", 1.0, 2)
    with pytest.raises(ValueError, match="lognormal sigma must be finite and >= 0, got -1.0"):
        DelayDistribution.lognormal(0.2, -1.0)


def test_worker_fault_validates_kind_and_delay():
    assert WorkerFault("hang", 0.5).kind is FaultKind.HANG
    with pytest.raises(ValueError, match="WorkerFault kind='slow' is invalid; use one of 'none', 'delay'"):
        WorkerFault("slow")
    with pytest.raises(ValueError, match="kind='none' needs delay=0, got delay=0.5; use kind='delay'"):
        WorkerFault("none", 0.5)
    with pytest.raises(ValueError, match="kind='delay' needs delay > 0"):
        WorkerFault("delay", 0.0)
    with pytest.raises(ValueError, match=r"WorkerFault delay \(seconds\) must be finite and >= 0, got nan"):
        WorkerFault("fail", math.nan)


class _CountingRun:
    """A model run stand-in that returns fixed outputs and counts its calls."""

    def __init__(self):
        self.calls = 0
        self.outputs = [np.arange(6.0).reshape(2, 3), np.ones((2, 1))]

    def __call__(self):
        self.calls += 1
        return self.outputs


def test_apply_fault_none_returns_run_outputs():
    run = _CountingRun()
    outputs = apply_fault(WorkerFault(), run, threading.Event())
    assert run.calls == 1
    assert outputs is run.outputs


def test_apply_fault_delay_sleeps_then_runs():
    run = _CountingRun()
    start = time.monotonic()
    apply_fault(WorkerFault("delay", 0.1), run, threading.Event())
    assert time.monotonic() - start >= 0.1
    assert run.calls == 1


def test_apply_fault_delay_wakes_when_cancelled():
    run = _CountingRun()
    cancelled = threading.Event()
    start = time.monotonic()
    threading.Timer(0.05, cancelled.set).start()
    with pytest.raises(RunCancelledError, match="cancelled during an injected delay of 60 s"):
        apply_fault(WorkerFault("delay", 60.0), run, cancelled)
    assert time.monotonic() - start < PROMPTLY
    assert run.calls == 0


def test_apply_fault_hang_waits_until_cancelled():
    run = _CountingRun()
    cancelled = threading.Event()
    start = time.monotonic()
    threading.Timer(0.1, cancelled.set).start()
    with pytest.raises(RunCancelledError, match="cancelled while hanging"):
        apply_fault(WorkerFault("hang"), run, cancelled)
    waited = time.monotonic() - start
    assert waited >= 0.1
    assert waited < PROMPTLY
    assert run.calls == 0


def test_apply_fault_fail_raises_without_running():
    run = _CountingRun()
    with pytest.raises(InjectedFaultError, match="injected failure"):
        apply_fault(WorkerFault("fail"), run, threading.Event())
    assert run.calls == 0


def test_apply_fault_nonfinite_keeps_shapes():
    run = _CountingRun()
    outputs = apply_fault(WorkerFault("nonfinite"), run, threading.Event())
    assert run.calls == 1
    assert [output.shape for output in outputs] == [(2, 3), (2, 1)]
    assert all(np.isnan(output).all() for output in outputs)
