"""Code shared by the worker backends: argument checks, the worker thread, reply collection.

`LocalBackend`, `RayBackend` and the benchmarks' `PoolBackend` differ in how a run reaches a
worker and how its reply comes back. The argument checks of a call, the rule for when it stops
collecting, and the filling of its `GatherResult` are the same for all of them, so they are
defined here once.
"""

from __future__ import annotations

import logging
import math
import numbers
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np

from ..exceptions import NotEnoughResultsError
from ..faults import NO_FAULT, FaultPlan, WorkerFault
from .base import GatherResult


class BackendMixin:
    """The `num_workers` and `faults` properties, the `gather` checks and the context manager.

    A class that mixes it in sets ``_num_workers``, ``_query_shape`` (None when unknown),
    ``_faults`` and ``_lock`` (the lock that admits one `gather` at a time) and provides
    ``close()``.
    """

    _num_workers: int
    _query_shape: Sequence[int] | None
    _faults: FaultPlan | None
    _lock: threading.Lock

    @property
    def num_workers(self) -> int:
        """N, the number of workers."""
        return self._num_workers

    @property
    def faults(self) -> FaultPlan | None:
        """The injected faults; setting a new plan takes effect from the next `gather`."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        checked = check_faults(plan, self._num_workers)
        with self._lock:
            self._faults = checked

    def _check_gather_arguments(
        self,
        queries: np.ndarray,
        output_names: Sequence[str] | None,
        needed: int,
        timeout: float,
        collect_for: float | None,
    ) -> tuple[np.ndarray, list[str] | None, int, float, float | None]:
        """Check the arguments of `gather` and return them cleaned, in the same order."""
        queries = check_queries(queries, self._num_workers, self._query_shape)
        names = check_output_names(output_names)
        needed = check_needed(needed, self._num_workers)
        timeout = check_seconds("timeout", timeout)
        if collect_for is not None:
            collect_for = check_seconds("collect_for", collect_for, allow_zero=True)
        return queries, names, needed, timeout, collect_for

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class TaskThread:
    """A daemon thread that runs the tasks submitted to it one at a time, in order.

    A task is any object with a ``replies`` queue; `_execute` turns it into a reply, which goes
    to that queue. Subclasses provide `_execute`.

    Parameters
    ----------
    name : str
        Name of the thread.
    """

    def __init__(self, name: str):
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0  # tasks submitted and not yet finished
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, task: Any) -> None:
        with self._idle:
            self._pending += 1
        self._tasks.put(task)

    def wait_idle(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        """Let the thread end once the tasks submitted before this call have run."""
        self._tasks.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task.replies.put(self._execute(task))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _execute(self, task: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class WorkerReply:
    """The end of one worker's run in one call."""

    worker: int
    outputs: list[np.ndarray] | None  # None when the run failed
    error: str | None
    finished: float  # time.monotonic() at the end of the run


@dataclass(frozen=True)
class CallClock:
    """The times of one gather call, all in `time.monotonic` seconds."""

    start: float
    deadline: float
    collect_until: float | None  # None: stop as soon as enough results arrived

    @classmethod
    def start_now(cls, timeout: float, collect_for: float | None) -> CallClock:
        """Start a call now with a deadline of `timeout` seconds and a window of `collect_for`."""
        start = time.monotonic()
        deadline = start + timeout
        collect_until = None if collect_for is None else min(start + collect_for, deadline)
        return cls(start, deadline, collect_until)

    def elapsed(self) -> float:
        """Seconds since the start of the call."""
        return time.monotonic() - self.start


def collect_replies(
    next_replies: Callable[[float], Iterable[WorkerReply]],
    num_workers: int,
    needed: int,
    clock: CallClock,
    on_failure: Callable[[int, str], None] | None = None,
) -> GatherResult:
    """Collect the replies of N workers until the call stops.

    The call stops once ``needed`` valid results arrived and the collection window ended, once
    the workers still running can no longer make up ``needed``, or at the deadline. The workers
    without a reply by then are late.

    Parameters
    ----------
    next_replies : callable
        ``next_replies(wait)`` waits at most ``wait`` seconds and returns the replies that
        arrived, possibly none.
    num_workers : int
        N, the workers that were sent a run.
    needed : int
        Valid results that decoding needs.
    clock : CallClock
        The start, deadline and collection window of the call.
    on_failure : callable or None
        ``on_failure(worker, reason)`` is called for every rejected result.

    Returns
    -------
    GatherResult
        With ``outputs``, ``failed``, ``elapsed`` and ``late`` set; the caller sets
        ``wall_time`` once it has stopped the runs still going.
    """
    result = GatherResult()
    running = set(range(num_workers))
    while running:
        now = time.monotonic()
        enough = len(result.outputs) >= needed
        if enough and (clock.collect_until is None or now >= clock.collect_until):
            break
        if len(result.outputs) + len(running) < needed:
            break  # the workers still running can no longer make up `needed`
        stop_at = min(clock.deadline, clock.collect_until) if enough else clock.deadline
        if stop_at <= now:
            break

        for reply in next_replies(stop_at - now):
            running.discard(reply.worker)
            result.elapsed[reply.worker] = reply.finished - clock.start
            if reply.error is None:
                result.outputs[reply.worker] = reply.outputs
            else:
                result.failed[reply.worker] = reply.error
                if on_failure is not None:
                    on_failure(reply.worker, reply.error)

    result.late = tuple(sorted(running))
    return result


def check_enough(result: GatherResult, num_workers: int, needed: int, timeout: float) -> None:
    """Raise `NotEnoughResultsError` when `result` has fewer than ``needed`` valid results."""
    if len(result.outputs) < needed:
        raise NotEnoughResultsError(len(result.outputs), num_workers, needed, timeout, result.failed, result.late)


def log_failure(logger: logging.Logger, call_id: int, worker: int, reason: str, fault: WorkerFault) -> None:
    """Log a rejected result on the backend's `logger`."""
    # Injected faults are expected, so they log at INFO; real failures are warnings.
    level = logging.INFO if fault.is_fault else logging.WARNING
    logger.log(level, "call %d: worker %d failed: %s", call_id, worker, reason)


def log_late(logger: logging.Logger, call_id: int, late: tuple[int, ...]) -> None:
    """Log the workers that were still running when the call stopped, if any."""
    if late:
        logger.info("call %d: workers %s were late and are cancelled", call_id, list(late))


def draw_faults(plan: FaultPlan | None, num_workers: int, rng: np.random.Generator) -> list[WorkerFault]:
    """Draw one fault per worker from `plan`; no plan gives every worker `NO_FAULT`."""
    return plan.draw(num_workers, rng) if plan else [NO_FAULT] * num_workers


def check_num_workers(num_workers: int) -> int:
    if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool):
        raise TypeError(f"num_workers must be an int, got {num_workers!r}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got num_workers={num_workers}")
    return int(num_workers)


def check_faults(plan: FaultPlan | None, num_workers: int) -> FaultPlan | None:
    if plan is None:
        return None
    if not isinstance(plan, FaultPlan):
        raise TypeError(f"faults must be a FaultPlan or None, got {type(plan).__name__}; "
                        "use FaultPlan.parse(text) for the text form")
    plan.validate(num_workers)
    return plan


def check_queries(queries: np.ndarray, num_workers: int, query_shape: Sequence[int] | None) -> np.ndarray:
    queries = np.asarray(queries)
    if not np.issubdtype(queries.dtype, np.floating):
        raise TypeError(f"queries must be a floating-point array, got dtype {queries.dtype}")
    if queries.ndim < 2 or queries.shape[0] < 1 or queries.shape[1] != num_workers:
        raise ValueError(
            f"queries must have shape (G, N, *query_shape) with G >= 1 and N = num_workers = "
            f"{num_workers}, got shape {queries.shape}"
        )
    if query_shape is not None and queries.shape[2:] != tuple(query_shape):
        raise ValueError(
            f"queries must have shape (G, N, *query_shape) with the model's query_shape "
            f"{tuple(query_shape)}, got shape {queries.shape}"
        )
    return queries


def check_needed(needed: int, num_workers: int) -> int:
    if not isinstance(needed, numbers.Integral) or isinstance(needed, bool):
        raise TypeError(f"needed must be an int, got {needed!r}")
    if not 1 <= needed <= num_workers:
        raise ValueError(f"needed must satisfy 1 <= needed <= num_workers={num_workers}, got {needed}")
    return int(needed)


def check_output_names(output_names: Sequence[str] | None) -> list[str] | None:
    if output_names is None:
        return None
    if isinstance(output_names, str) or not all(isinstance(name, str) for name in output_names):
        raise TypeError(f"output_names must be a sequence of names or None, got {output_names!r}; "
                        "for one output write [name]")
    return list(output_names)


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rule} seconds, got {name}={value!r}")
    return value


def check_outputs(outputs: list[np.ndarray], rows: int) -> str | None:
    """Return why the outputs of a run are unusable, or None when they are valid."""
    for position, output in enumerate(outputs):
        if output.ndim == 0 or output.shape[0] != rows:
            return f"output {position} has shape {output.shape}, expected ({rows}, ...)"
        if not np.isfinite(output).all():
            return f"output {position} contains non-finite values"
    return None
