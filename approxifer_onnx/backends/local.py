"""Workers as threads of this process, each with its own onnxruntime session.

Each worker owns one session and one thread that takes tasks from a queue, so a worker runs
one task at a time and starts the next only after its previous run ended. Every task carries
its own `onnxruntime.RunOptions` and cancellation event: when a call stops, the tasks still
running are cancelled through ``RunOptions.terminate`` and the event, and their replies go to
that call's own queue, which no later call reads.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import onnxruntime as ort

from ..exceptions import NotEnoughResultsError
from ..faults import NO_FAULT, FaultPlan, RunCancelledError, WorkerFault, apply_fault
from .base import GatherResult

__all__ = ["LocalBackend"]

logger = logging.getLogger(__name__)

# Seconds that close() waits for all worker threads together. A run that ignores
# RunOptions.terminate (one long operator) can outlast it; its daemon thread is then left behind.
CLOSE_TIMEOUT = 30.0


def _quiet_run_options() -> ort.RunOptions:
    # Every failed run is logged by this module, so onnxruntime's own error log would repeat it.
    options = ort.RunOptions()
    options.log_severity_level = 4  # fatal only
    return options


@dataclass
class _Task:
    """One worker's share of one gather call."""

    call_id: int
    inputs: np.ndarray  # (G, *query_shape)
    output_names: list[str] | None
    fault: WorkerFault
    replies: queue.SimpleQueue  # the call's own reply queue
    run_options: ort.RunOptions = field(default_factory=_quiet_run_options)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Wake an injected delay or hang and stop the model run between two operators."""
        self.cancelled.set()
        self.run_options.terminate = True


@dataclass(frozen=True)
class _Reply:
    call_id: int
    worker: int
    outputs: list[np.ndarray] | None  # None when the run failed
    error: str | None
    finished: float  # time.monotonic() at the end of the run


class _Worker:
    """One onnxruntime session served by one thread."""

    def __init__(self, index: int, model: Any, session: Any):
        self.index = index
        self._model = model
        self._session = session
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._pending = 0  # tasks submitted and not yet finished
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=f"approxifer-worker-{index}", daemon=True)
        self._thread.start()

    def submit(self, task: _Task) -> None:
        with self._idle:
            self._pending += 1
        self._tasks.put(task)

    def wait_idle(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
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
        self._session = None

    def _execute(self, task: _Task) -> _Reply:
        if task.cancelled.is_set():
            return _Reply(task.call_id, self.index, None, "cancelled before it started", time.monotonic())

        def run_model() -> list[np.ndarray]:
            outputs = self._model.run(self._session, task.inputs, task.output_names, task.run_options)
            return [np.asarray(output, dtype=np.float64) for output in outputs]

        try:
            outputs = apply_fault(task.fault, run_model, task.cancelled)
        except RunCancelledError as error:
            return _Reply(task.call_id, self.index, None, str(error), time.monotonic())
        except Exception as error:  # the thread must survive any failure of a run and report it
            if task.cancelled.is_set():
                reason = "cancelled: the run was terminated"
            else:
                reason = f"{type(error).__name__}: {error}"
            return _Reply(task.call_id, self.index, None, reason, time.monotonic())

        finished = time.monotonic()
        reason = _check_outputs(outputs, rows=len(task.inputs))
        if reason is not None:
            return _Reply(task.call_id, self.index, None, reason, finished)
        return _Reply(task.call_id, self.index, outputs, None, finished)


class LocalBackend:
    """N workers as threads in this process, each with its own onnxruntime session.

    Worker i runs ``queries[:, i]`` of a `gather` call as one batch. Calls from several threads
    are safe but run one after another, because a lock admits one `gather` at a time.

    Parameters
    ----------
    model : OnnxModel
        Provides ``new_session(intra_op_threads=...)`` and
        ``run(session, x, output_names, run_options) -> list of float64 arrays (len(x), C)``.
        Its ``query_shape``, when present, checks the shape of the queries in `gather`.
    num_workers : int, >= 1
        N, the number of workers.
    faults : FaultPlan or None
        Faults to inject; a new draw is made for every call.
    rng : numpy.random.Generator, int or None
        Randomness of the fault draws.
    intra_op_threads : int or None
        onnxruntime threads per worker session. None gives each worker an equal share of the
        CPUs this process may use, at least 1, so that N sessions do not oversubscribe them.

    Examples
    --------
    >>> with LocalBackend(model, num_workers=9) as backend:  # doctest: +SKIP
    ...     result = backend.gather(coded, needed=8, timeout=2.0)
    """

    def __init__(
        self,
        model: Any,
        num_workers: int,
        *,
        faults: FaultPlan | None = None,
        rng: np.random.Generator | int | None = None,
        intra_op_threads: int | None = None,
    ):
        if not isinstance(num_workers, numbers.Integral) or isinstance(num_workers, bool):
            raise TypeError(f"num_workers must be an int, got {num_workers!r}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got num_workers={num_workers}")
        self._num_workers = int(num_workers)
        self._query_shape = getattr(model, "query_shape", None)  # checked in gather when known
        self._faults = self._check_faults(faults)
        self._rng = np.random.default_rng(rng)
        threads = _default_intra_op_threads(self._num_workers) if intra_op_threads is None else intra_op_threads
        if not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"intra_op_threads must be an int >= 1 or None, got {intra_op_threads!r}")

        self._lock = threading.Lock()
        self._call_ids = itertools.count(1)
        self._current: list[_Task] = []  # tasks of the running call, for close()
        self._closed = False
        self._workers: list[_Worker] = []
        try:
            for index in range(self._num_workers):
                session = model.new_session(intra_op_threads=int(threads))
                self._workers.append(_Worker(index, model, session))
        except BaseException:
            self.close()
            raise
        logger.info("started %d local workers with %d intra-op threads each", self._num_workers, threads)

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
        checked = self._check_faults(plan)
        with self._lock:
            self._faults = checked

    def gather(
        self,
        queries: np.ndarray,
        output_names: Sequence[str] | None = None,
        *,
        needed: int,
        timeout: float,
        collect_for: float | None = None,
    ) -> GatherResult:
        """Send ``queries[:, i]`` to worker i and collect the results.

        The call returns as soon as ``needed`` valid results arrived. With ``collect_for`` it
        keeps collecting until all N workers replied or ``collect_for`` seconds passed since the
        start, and it never stops with fewer than ``needed`` before ``timeout``. A worker that
        raises, returns non-finite values or hangs is a straggler: it is logged, reported in the
        result and never holds the call past ``timeout``. Runs still going when the call stops
        are cancelled; a worker starts its next task only once its cancelled run has ended.

        Parameters
        ----------
        queries : numpy.ndarray, shape (G, N, *query_shape)
            The coded queries, floating point (float64 or the model's input dtype).
        output_names : sequence of str or None
            Model outputs to return; None lets the model return all of them.
        needed : int, 1 <= needed <= N
            Valid results that decoding needs.
        timeout : float, seconds, > 0
            Deadline of the call, counted from its start with `time.monotonic`.
        collect_for : float or None, seconds, >= 0
            Collection window after which the call returns with what it has (at least
            ``needed``). None returns as soon as ``needed`` arrived. Values above ``timeout``
            act as ``timeout``.

        Returns
        -------
        GatherResult
            ``outputs`` maps each worker with a valid result to its float64 arrays (G, C).

        Raises
        ------
        NotEnoughResultsError
            When fewer than ``needed`` valid results arrive before ``timeout``, or as soon as
            the workers still running could no longer make up ``needed``.
        RuntimeError
            When the backend is closed.
        """
        queries = self._check_queries(queries)
        names = _check_output_names(output_names)
        needed = self._check_needed(needed)
        timeout = _check_seconds("timeout", timeout)
        if collect_for is not None:
            collect_for = _check_seconds("collect_for", collect_for, allow_zero=True)

        with self._lock:
            if self._closed:
                raise RuntimeError("LocalBackend is closed; create a new backend to run more calls")
            return self._gather(queries, names, needed, timeout, collect_for)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every worker has finished its tasks, cancelled ones included.

        Parameters
        ----------
        timeout : float or None, seconds
            Maximum wait; None waits without limit.

        Returns
        -------
        bool
            True if all workers are idle, False if ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not worker.wait_idle(remaining):
                return False
        return True

    def close(self) -> None:
        """Cancel outstanding work, stop every worker thread and wait for them.

        Calling it again does nothing. A `gather` running in another thread gets its runs
        cancelled and reports them in ``failed``.
        """
        if self._closed:
            return
        self._closed = True
        for task in list(self._current):
            task.cancel()
        for worker in self._workers:
            worker.stop()

        deadline = time.monotonic() + CLOSE_TIMEOUT
        for worker in self._workers:
            if not worker.join(max(0.0, deadline - time.monotonic())):
                logger.warning(
                    "worker %d did not stop within %g s after close(); its run ignores termination",
                    worker.index, CLOSE_TIMEOUT,
                )
        logger.info("closed %d local workers", self._num_workers)

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _gather(
        self,
        queries: np.ndarray,
        names: list[str] | None,
        needed: int,
        timeout: float,
        collect_for: float | None,
    ) -> GatherResult:
        start = time.monotonic()
        deadline = start + timeout
        collect_until = None if collect_for is None else min(start + collect_for, deadline)
        call_id = next(self._call_ids)

        # Dispatch: one task per worker, all replying to a queue that only this call reads.
        faults = self._faults.draw(self._num_workers, self._rng) if self._faults else [NO_FAULT] * self._num_workers
        replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        tasks = [
            _Task(call_id, np.ascontiguousarray(queries[:, index]), names, faults[index], replies)
            for index in range(self._num_workers)
        ]
        self._current = tasks
        for worker, task in zip(self._workers, tasks):
            worker.submit(task)

        try:
            result = self._collect(replies, call_id, faults, start, needed, deadline, collect_until)
        finally:
            # Stop the runs still going. Cancelling a task that already finished has no effect.
            for task in tasks:
                task.cancel()
            self._current = []

        if result.late:
            logger.info("call %d: workers %s were late and are cancelled", call_id, list(result.late))
        if len(result.outputs) < needed:
            raise NotEnoughResultsError(
                len(result.outputs), self._num_workers, needed, timeout, result.failed, result.late
            )
        return result

    def _collect(
        self,
        replies: queue.SimpleQueue,
        call_id: int,
        faults: list[WorkerFault],
        start: float,
        needed: int,
        deadline: float,
        collect_until: float | None,
    ) -> GatherResult:
        # Take replies until enough arrived and the collection window ended, until `needed` became
        # unreachable, or until the deadline. The workers without a reply by then are late.
        result = GatherResult()
        running = set(range(self._num_workers))
        while running:
            now = time.monotonic()
            enough = len(result.outputs) >= needed
            if enough and (collect_until is None or now >= collect_until):
                break
            if len(result.outputs) + len(running) < needed:
                break

            stop_at = min(deadline, collect_until) if enough else deadline
            if stop_at <= now:
                break
            try:
                reply = replies.get(timeout=stop_at - now)
            except queue.Empty:
                continue

            if reply.call_id != call_id:
                # Unreachable while each call has its own queue; it keeps a stale result out if
                # queues are ever shared.
                logger.debug("call %d: dropped a reply of call %d", call_id, reply.call_id)
                continue
            running.discard(reply.worker)
            result.elapsed[reply.worker] = reply.finished - start
            if reply.error is None:
                result.outputs[reply.worker] = reply.outputs
            else:
                result.failed[reply.worker] = reply.error
                _log_failure(call_id, reply.worker, reply.error, faults[reply.worker])

        result.late = tuple(sorted(running))
        result.wall_time = time.monotonic() - start
        return result

    def _check_faults(self, plan: FaultPlan | None) -> FaultPlan | None:
        if plan is None:
            return None
        if not isinstance(plan, FaultPlan):
            raise TypeError(f"faults must be a FaultPlan or None, got {type(plan).__name__}; "
                            "use FaultPlan.parse(text) for the text form")
        plan.validate(self._num_workers)
        return plan

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries)
        if not np.issubdtype(queries.dtype, np.floating):
            raise TypeError(f"queries must be a floating-point array, got dtype {queries.dtype}")
        if queries.ndim < 2 or queries.shape[0] < 1 or queries.shape[1] != self._num_workers:
            raise ValueError(
                f"queries must have shape (G, N, *query_shape) with G >= 1 and N = num_workers = "
                f"{self._num_workers}, got shape {queries.shape}"
            )
        if self._query_shape is not None and queries.shape[2:] != tuple(self._query_shape):
            raise ValueError(
                f"queries must have shape (G, N, *query_shape) with the model's query_shape "
                f"{tuple(self._query_shape)}, got shape {queries.shape}"
            )
        return queries

    def _check_needed(self, needed: int) -> int:
        if not isinstance(needed, numbers.Integral) or isinstance(needed, bool):
            raise TypeError(f"needed must be an int, got {needed!r}")
        if not 1 <= needed <= self._num_workers:
            raise ValueError(f"needed must satisfy 1 <= needed <= num_workers={self._num_workers}, got {needed}")
        return int(needed)


def _default_intra_op_threads(num_workers: int) -> int:
    # The CPUs this process may run on, which can be fewer than the machine has.
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    return max(1, cpus // num_workers)


def _check_outputs(outputs: list[np.ndarray], rows: int) -> str | None:
    # Returns why the outputs of a run are unusable, or None when they are valid.
    for position, output in enumerate(outputs):
        if output.ndim == 0 or output.shape[0] != rows:
            return f"output {position} has shape {output.shape}, expected ({rows}, ...)"
        if not np.isfinite(output).all():
            return f"output {position} contains non-finite values"
    return None


def _check_output_names(output_names: Sequence[str] | None) -> list[str] | None:
    if output_names is None:
        return None
    if isinstance(output_names, str) or not all(isinstance(name, str) for name in output_names):
        raise TypeError(f"output_names must be a sequence of names or None, got {output_names!r}; "
                        "for one output write [name]")
    return list(output_names)


def _check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rule} seconds, got {name}={value!r}")
    return value


def _log_failure(call_id: int, worker: int, reason: str, fault: WorkerFault) -> None:
    # Injected faults are expected, so they log at INFO; real failures are warnings.
    level = logging.INFO if fault.is_fault else logging.WARNING
    logger.log(level, "call %d: worker %d failed: %s", call_id, worker, reason)
