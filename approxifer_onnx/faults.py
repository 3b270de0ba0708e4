"""Injected worker faults: delays, failures, hangs and non-finite outputs.

A `FaultPlan` describes which workers misbehave and how. Each call of a backend draws one
`WorkerFault` per worker from the plan (`FaultPlan.draw`), and the worker applies it around its
real model run (`apply_fault`). Faults simulate stragglers on a single machine, so the coded
session can be tested and benchmarked without a real cluster.

The text form, the CLI's ``--simulate-stragglers`` value, is a list of ``KEY=VALUE`` clauses
separated by ``;``. `GRAMMAR` below defines it, and `FaultPlan.parse` shows it in its errors.
Examples: ``workers=2,5;delay=0.5`` (workers 2 and 5 are late by 0.5 s in every call),
``p=0.05;delay=exp:0.2``, ``count=1;delay=hang``, ``fail=3``, ``nonfinite=1``. Workers are
numbered from 0.
"""

from __future__ import annotations

import enum
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "GRAMMAR",
    "DelayDistribution",
    "FaultKind",
    "FaultPlan",
    "InjectedFaultError",
    "RunCancelledError",
    "WorkerFault",
    "apply_fault",
]

GRAMMAR = """\
fault plan grammar: clauses KEY=VALUE separated by ';', workers numbered from 0
  workers=I[,I...]    these workers are late in every call (needs delay=SECONDS or delay=hang)
  p=P                 each other worker is late with probability P in every call, 0 <= P <= 1
  count=S             exactly S random other workers are late in every call
  delay=D             delay of late workers: SECONDS, exp:MEAN, pareto:MIN:ALPHA,
                      lognormal:MEDIAN:SIGMA (median seconds, sigma of the log) or hang
  fail=I[,I...]       these workers raise an exception in every call
  hang=I[,I...]       these workers hang until the call cancels them
  nonfinite=I[,I...]  these workers return NaN outputs
'other' workers are those without a fixed fault (workers=, fail=, hang=, nonfinite=).
example: count=1;delay=exp:0.2;fail=3"""


class InjectedFaultError(RuntimeError):
    """The failure that a worker with a ``"fail"`` fault raises in place of its result."""


class RunCancelledError(RuntimeError):
    """A worker run that was cancelled because its call had already stopped."""


class FaultKind(str, enum.Enum):
    """The effect of an injected fault on one worker's run.

    A new kind needs a member here and one branch in `apply_fault`.
    """

    NONE = "none"  # run normally
    DELAY = "delay"  # sleep `WorkerFault.delay` seconds, then run normally
    FAIL = "fail"  # raise InjectedFaultError
    HANG = "hang"  # block until the call is cancelled
    NONFINITE = "nonfinite"  # run, then replace every output value by NaN


@dataclass(frozen=True)
class WorkerFault:
    """The fault of one worker in one call.

    Parameters
    ----------
    kind : FaultKind or str
        One of ``"none"``, ``"delay"``, ``"fail"``, ``"hang"``, ``"nonfinite"``.
    delay : float, >= 0
        Seconds to wait before the fault acts (for ``"fail"``, ``"hang"`` and ``"nonfinite"``)
        or before the normal run (``"delay"``). Must be 0 for ``"none"`` and > 0 for
        ``"delay"``.
    """

    kind: FaultKind = FaultKind.NONE
    delay: float = 0.0

    def __post_init__(self) -> None:
        try:
            kind = FaultKind(self.kind)
        except ValueError:
            choices = ", ".join(repr(member.value) for member in FaultKind)
            raise ValueError(f"WorkerFault kind={self.kind!r} is invalid; use one of {choices}") from None
        delay = _check_seconds("WorkerFault delay", self.delay, allow_zero=True)
        if kind is FaultKind.NONE and delay > 0:
            raise ValueError(f"WorkerFault kind='none' needs delay=0, got delay={delay:g}; use kind='delay'")
        if kind is FaultKind.DELAY and delay == 0:
            raise ValueError("WorkerFault kind='delay' needs delay > 0, got delay=0; use kind='none'")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "delay", delay)

    @property
    def is_fault(self) -> bool:
        """Whether this worker misbehaves in the call (any kind but ``"none"``)."""
        return self.kind is not FaultKind.NONE



def apply_fault(
    fault: WorkerFault,
    run: Callable[[], list[np.ndarray]],
    cancelled: threading.Event,
) -> list[np.ndarray]:
    """Run one worker's model call under an injected fault.

    Every wait happens on ``cancelled``, so a call that stops early wakes a delayed or hanging
    worker at once.

    Parameters
    ----------
    fault : WorkerFault
        The fault to inject.
    run : callable
        Runs the real model and returns its outputs, each of shape (G, C).
    cancelled : threading.Event
        Set by the caller when the result is no longer wanted.

    Returns
    -------
    list of numpy.ndarray
        The outputs of ``run``, or arrays of the same shapes filled with NaN for
        ``"nonfinite"``.

    Raises
    ------
    RunCancelledError
        When ``cancelled`` is set during the delay or the hang.
    InjectedFaultError
        For a ``"fail"`` fault.
    """
    if fault.delay > 0 and cancelled.wait(fault.delay):
        raise RunCancelledError(f"cancelled during an injected delay of {fault.delay:g} s")

    if fault.kind is FaultKind.HANG:
        cancelled.wait()
        raise RunCancelledError("cancelled while hanging (injected hang)")
    if fault.kind is FaultKind.FAIL:
        raise InjectedFaultError("injected failure")

    outputs = run()
    if fault.kind is FaultKind.NONFINITE:
        return [np.full(np.shape(output), np.nan) for output in outputs]
    return outputs


@dataclass(frozen=True)
class DelayDistribution:
    """The delay of a randomly chosen late worker, in seconds.

    Build one with the class methods `fixed`, `exponential`, `pareto`, `lognormal` or `hang`,
    or from text with `parse`.

    Parameters
    ----------
    family : str
        ``"fixed"``, ``"exponential"``, ``"pareto"``, ``"lognormal"`` or ``"hang"``.
    scale : float, seconds
        The fixed delay, the exponential mean, the Pareto minimum or the log-normal median.
        0 for ``"hang"``.
    shape : float
        The Pareto tail index alpha (> 0; the mean is finite only for alpha > 1) or the
        log-normal sigma (standard deviation of the log, >= 0). 0 for the other families.
    """

    family: str
    scale: float = 0.0
    shape: float = 0.0

    FAMILIES = ("fixed", "exponential", "pareto", "lognormal", "hang")

    def __post_init__(self) -> None:
        if self.family not in self.FAMILIES:
            raise ValueError(f"delay family={self.family!r} is invalid; use one of {', '.join(self.FAMILIES)}")
        if self.family == "hang":
            if self.scale != 0 or self.shape != 0:
                raise ValueError("a 'hang' delay takes no scale or shape")
            return
        object.__setattr__(self, "scale", _check_seconds(f"{self.family} delay scale", self.scale))
        if self.family == "pareto":
            object.__setattr__(self, "shape", _check_positive("pareto tail index alpha", self.shape))
        elif self.family == "lognormal":
            object.__setattr__(self, "shape", _check_positive("lognormal sigma", self.shape, allow_zero=True))
        elif self.shape != 0:
            raise ValueError(f"a {self.family!r} delay takes no shape, got shape={self.shape!r}")

    @classmethod
    def fixed(cls, seconds: float) -> DelayDistribution:
        """Return a delay of exactly ``seconds``."""
        return cls("fixed", seconds)

    @classmethod
    def exponential(cls, mean: float) -> DelayDistribution:
        """Return an exponential delay with the given mean in seconds."""
        return cls("exponential", mean)

    @classmethod
    def pareto(cls, minimum: float, alpha: float) -> DelayDistribution:
        """Return a Pareto delay: P(delay > t) = (minimum / t) ** alpha for t >= minimum."""
        return cls("pareto", minimum, alpha)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> DelayDistribution:
        """Return a log-normal delay: log(delay) ~ Normal(log(median), sigma**2)."""
        return cls("lognormal", median, sigma)

    @classmethod
    def hang(cls) -> DelayDistribution:
        """Return the 'delay' of a worker that hangs until its call cancels it."""
        return cls("hang")

    @classmethod
    def parse(cls, text: str) -> DelayDistribution:
        """Parse ``SECONDS``, ``exp:MEAN``, ``pareto:MIN:ALPHA``, ``lognormal:MEDIAN:SIGMA`` or ``hang``."""
        name, *params = [part.strip() for part in text.strip().split(":")]
        arities = {"exp": 1, "pareto": 2, "lognormal": 2, "hang": 0}
        if name not in arities:
            if params:
                raise ValueError(f"delay {text!r}: unknown distribution {name!r}; use exp, pareto, lognormal or hang")
            return cls.fixed(_parse_float(text, "delay", text))
        if len(params) != arities[name]:
            raise ValueError(f"delay {text!r}: {name} takes {arities[name]} parameter(s), got {len(params)}")

        values = [_parse_float(param, "delay", text) for param in params]
        if name == "exp":
            return cls.exponential(*values)
        if name == "pareto":
            return cls.pareto(*values)
        if name == "lognormal":
            return cls.lognormal(*values)
        return cls.hang()

    def to_text(self) -> str:
        """Return the text form that `parse` reads back."""
        if self.family == "fixed":
            return f"{self.scale!r}"
        if self.family == "exponential":
            return f"exp:{self.scale!r}"
        if self.family == "hang":
            return "hang"
        return f"{self.family}:{self.scale!r}:{self.shape!r}"

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` delays in seconds; ``math.inf`` stands for a hang.

        Returns
        -------
        numpy.ndarray of float64, shape (size,)
        """
        if self.family == "fixed":
            return np.full(size, self.scale)
        if self.family == "exponential":
            return rng.exponential(self.scale, size)
        if self.family == "pareto":
            # Generator.pareto draws the Lomax distribution, the classical Pareto shifted to 0.
            return self.scale * (1.0 + rng.pareto(self.shape, size))
        if self.family == "lognormal":
            return rng.lognormal(math.log(self.scale), self.shape, size)
        return np.full(size, math.inf)


@dataclass(frozen=True)
class FaultPlan:
    """Injected faults for a set of workers: which of them misbehave in each call, and how.

    Each worker gets at most one fixed fault (``delays``, ``fail``, ``hang`` or ``nonfinite``).
    Random late workers (``probability`` or ``count``) are drawn in every call among the
    workers without a fixed fault, so ``fail=(0,), count=1`` gives two faulty workers per call.

    Parameters
    ----------
    delays : mapping of int to float
        Worker index -> delay in seconds (> 0) applied in every call.
    probability : float, 0 <= probability <= 1
        Chance that each worker without a fixed fault is late in a call.
    count : int, >= 0
        Exactly this many workers without a fixed fault are late in each call, chosen uniformly
        at random (the protocol of S random stragglers per group).
    random_delay : DelayDistribution or None
        The delay of the random late workers. Required when ``probability`` or ``count`` is set.
    fail, hang, nonfinite : iterable of int
        Workers that raise, that hang until cancelled, or that return NaN, in every call.
    """

    delays: Mapping[int, float] = field(default_factory=dict)
    probability: float = 0.0
    count: int = 0
    random_delay: DelayDistribution | None = None
    fail: tuple[int, ...] = ()
    hang: tuple[int, ...] = ()
    nonfinite: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.delays, Mapping):
            raise TypeError(f"FaultPlan delays must be a mapping of worker -> seconds, got {type(self.delays).__name__}")
        delays = {
            _check_worker("delays", worker): _check_seconds(f"delays[{worker}]", seconds)
            for worker, seconds in self.delays.items()
        }
        object.__setattr__(self, "delays", dict(sorted(delays.items())))
        for name in ("fail", "hang", "nonfinite"):
            object.__setattr__(self, name, _check_workers(name, getattr(self, name)))

        owners: dict[int, str] = {}
        for name, workers in (("delays", self.delays), ("fail", self.fail), ("hang", self.hang),
                              ("nonfinite", self.nonfinite)):
            for worker in workers:
                if worker in owners:
                    raise ValueError(
                        f"worker {worker} is in both {owners[worker]} and {name}; give each worker one fixed fault"
                    )
                owners[worker] = name

        probability = _check_positive("FaultPlan probability", self.probability, allow_zero=True)
        if probability > 1:
            raise ValueError(f"FaultPlan probability must be in [0, 1], got {probability!r}")
        object.__setattr__(self, "probability", probability)
        if not isinstance(self.count, numbers.Integral) or isinstance(self.count, bool):
            raise TypeError(f"FaultPlan count must be an int, got {self.count!r}")
        if self.count < 0:
            raise ValueError(f"FaultPlan count must be >= 0, got count={self.count}")
        object.__setattr__(self, "count", int(self.count))

        if probability > 0 and self.count > 0:
            raise ValueError(
                f"FaultPlan probability={probability!r} and count={self.count} are both set; "
                "random late workers come from one of them, so set the other to 0"
            )
        has_random_late = probability > 0 or self.count > 0
        if has_random_late and self.random_delay is None:
            raise ValueError("FaultPlan with probability or count needs random_delay, e.g. DelayDistribution.fixed(0.5)")
        if self.random_delay is not None and not isinstance(self.random_delay, DelayDistribution):
            raise TypeError(f"FaultPlan random_delay must be a DelayDistribution, got {type(self.random_delay).__name__}")
        if not has_random_late and self.random_delay is not None:
            raise ValueError("FaultPlan random_delay is set but probability and count are 0; set one of them")

    @property
    def fixed_workers(self) -> tuple[int, ...]:
        """Workers with a fixed fault, sorted."""
        return tuple(sorted({*self.delays, *self.fail, *self.hang, *self.nonfinite}))

    def validate(self, num_workers: int) -> None:
        """Raise ValueError unless the plan fits ``num_workers`` workers.

        Every named worker must be below ``num_workers``, and ``count`` must not exceed the
        workers left without a fixed fault.
        """
        if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
        fixed = self.fixed_workers
        if fixed and fixed[-1] >= num_workers:
            raise ValueError(
                f"fault plan names worker {fixed[-1]}, but num_workers={num_workers}; "
                f"workers are numbered 0..{num_workers - 1}"
            )
        free = num_workers - len(fixed)
        if self.count > free:
            raise ValueError(
                f"fault plan count={self.count} exceeds the {free} of num_workers={num_workers} workers "
                f"without a fixed fault; lower count or name fewer workers"
            )

    def draw(self, num_workers: int, rng: np.random.Generator | int | None = None) -> list[WorkerFault]:
        """Draw the fault of every worker for one call.

        Parameters
        ----------
        num_workers : int, >= 1
            N, the workers in the call.
        rng : numpy.random.Generator, int or None
            Source of the random late workers and their delays (a seed makes it repeatable).

        Returns
        -------
        list of WorkerFault, length N
        """
        self.validate(num_workers)
        rng = np.random.default_rng(rng)
        faults = [NO_FAULT] * num_workers

        for worker, seconds in self.delays.items():
            faults[worker] = WorkerFault(FaultKind.DELAY, seconds)
        for kind, workers in ((FaultKind.FAIL, self.fail), (FaultKind.HANG, self.hang),
                              (FaultKind.NONFINITE, self.nonfinite)):
            for worker in workers:
                faults[worker] = WorkerFault(kind)

        # Random late workers, drawn among those without a fixed fault.
        fixed = set(self.fixed_workers)
        free = np.array([worker for worker in range(num_workers) if worker not in fixed], dtype=np.int64)
        if self.count > 0:
            late = rng.choice(free, size=self.count, replace=False)
        elif self.probability > 0:
            late = free[rng.random(free.size) < self.probability]
        else:
            return faults
        for worker, seconds in zip(late.tolist(), self.random_delay.sample(rng, late.size).tolist()):
            faults[worker] = WorkerFault(FaultKind.HANG) if math.isinf(seconds) else _delay_fault(seconds)
        return faults

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse the text form described in the module docstring.

        Raises
        ------
        ValueError
            Naming the invalid clause and showing the grammar.
        """
        if not isinstance(text, str):
            raise TypeError(f"fault plan must be a string, got {type(text).__name__}")
        try:
            return cls._parse_clauses(text)
        except ValueError as error:
            raise ValueError(f"invalid fault plan {text!r}: {error}\n{GRAMMAR}") from None

    @classmethod
    def _parse_clauses(cls, text: str) -> FaultPlan:
        values: dict[str, str] = {}
        for clause in text.split(";"):
            if not clause.strip():
                continue
            key, equals, value = clause.partition("=")
            key = key.strip().lower()
            if not equals or not value.strip():
                raise ValueError(f"clause {clause.strip()!r} is not KEY=VALUE")
            if key not in _PLAN_KEYS:
                raise ValueError(f"unknown key {key!r} in clause {clause.strip()!r}; keys are {', '.join(_PLAN_KEYS)}")
            if key in values:
                raise ValueError(f"key {key!r} appears twice")
            values[key] = value.strip()
        if not values:
            raise ValueError("the plan is empty")

        delay = DelayDistribution.parse(values["delay"]) if "delay" in values else None
        late_workers = _parse_workers("workers", values.get("workers"))
        probability = _parse_float(values["p"], "p", values["p"]) if "p" in values else 0.0
        count = _parse_int(values["count"], "count", values["count"]) if "count" in values else 0
        uses_delay = bool(late_workers) or "p" in values or "count" in values
        if uses_delay and delay is None:
            raise ValueError("workers=, p= and count= need a delay=, e.g. delay=0.5 or delay=exp:0.2")
        if delay is not None and not uses_delay:
            raise ValueError("delay= is set but no late workers are chosen; add workers=, p= or count=")

        hang = list(_parse_workers("hang", values.get("hang")))
        delays: dict[int, float] = {}
        if late_workers:
            if delay.family == "hang":
                hang.extend(late_workers)
            elif delay.family == "fixed":
                delays = dict.fromkeys(late_workers, delay.scale)
            else:
                raise ValueError(f"workers= takes delay=SECONDS or delay=hang, got delay={values['delay']}")

        has_random_late = probability > 0 or count > 0
        return cls(
            delays=delays,
            probability=probability,
            count=count,
            random_delay=delay if has_random_late else None,
            fail=_parse_workers("fail", values.get("fail")),
            hang=tuple(hang),
            nonfinite=_parse_workers("nonfinite", values.get("nonfinite")),
        )

    def to_text(self) -> str:
        """Return a text form that `parse` reads back to an equal plan.

        Fixed delays of different lengths have no single-clause form, so they raise ValueError.
        """
        clauses = []
        if len(set(self.delays.values())) > 1:
            raise ValueError(f"fixed delays {self.delays} differ between workers; the text form has one delay")
        if self.delays and self.random_delay is not None and self.random_delay != DelayDistribution.fixed(
            next(iter(self.delays.values()))
        ):
            raise ValueError("the text form has one delay= for workers= and the random late workers, but they differ")
        if self.delays:
            clauses.append("workers=" + ",".join(map(str, self.delays)))
        if self.probability > 0:
            clauses.append(f"p={self.probability!r}")
        if self.count > 0:
            clauses.append(f"count={self.count}")
        if self.random_delay is not None:
            clauses.append(f"delay={self.random_delay.to_text()}")
        elif self.delays:
            clauses.append(f"delay={next(iter(self.delays.values()))!r}")
        for name in ("fail", "hang", "nonfinite"):
            workers = getattr(self, name)
            if workers:
                clauses.append(f"{name}=" + ",".join(map(str, workers)))
        return ";".join(clauses)


_PLAN_KEYS = ("workers", "p", "count", "delay", "fail", "hang", "nonfinite")


def _delay_fault(seconds: float) -> WorkerFault:
    # A sampled delay can round to 0 (e.g. an exponential draw); that worker is on time.
    return WorkerFault(FaultKind.DELAY, seconds) if seconds > 0 else NO_FAULT


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rule}, got {value!r}")
    return value


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    return _check_positive(f"{name} (seconds)", value, allow_zero=allow_zero)


def _check_worker(name: str, worker: object) -> int:
    if not isinstance(worker, numbers.Integral) or isinstance(worker, bool):
        raise TypeError(f"FaultPlan {name} must name workers by int index, got {worker!r}")
    if worker < 0:
        raise ValueError(f"FaultPlan {name} names worker {worker}; worker indices start at 0")
    return int(worker)


def _check_workers(name: str, workers: Iterable[int]) -> tuple[int, ...]:
    if isinstance(workers, (str, bytes)) or not isinstance(workers, Iterable):
        raise TypeError(f"FaultPlan {name} must be a collection of worker indices, got {workers!r}")
    checked = [_check_worker(name, worker) for worker in workers]
    if len(set(checked)) != len(checked):
        raise ValueError(f"FaultPlan {name} names a worker twice: {checked}")
    return tuple(sorted(checked))


def _parse_float(token: str, key: str, clause_value: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{key}={clause_value}: {token!r} is not a number") from None


def _parse_int(token: str, key: str, clause_value: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{key}={clause_value}: {token!r} is not an integer") from None


def _parse_workers(key: str, value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(_parse_int(token.strip(), key, value) for token in value.split(","))


# The fault of a worker that runs normally (defined last, because validation uses the helpers above).
NO_FAULT = WorkerFault()
