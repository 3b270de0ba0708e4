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
import numbers
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from ..faults import FaultPlan, RunCancelledError, WorkerFault, apply_fault
from ._common import (
    BackendMixin,
    CallClock,
    TaskThread,
    WorkerReply,
    check_enough,
    check_faults,
    check_num_workers,
    check_outputs,
    collect_replies,
    draw_faults,
    log_failure,
    log_late,
)
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
class _Reply(WorkerReply):
    call_id: int


class _Worker(TaskThread):
    """One onnxruntime session served by one thread."""

    def __init__(self, index: int, model: Any, session: Any):
        self.index = index
        self._model = model
        self._session = session
        super().__init__(name=f"approxifer-worker-{index}")

    def _serve(self) -> None:
        super()._serve()
        self._session = None

    def _execute(self, task: _Task) -> _Reply:
        def reply(outputs: list[np.ndarray] | None, error: str | None, finished: float) -> _Reply:
            return _Reply(self.index, outputs, error, finished, task.call_id)

        if task.cancelled.is_set():
            return reply(None, "cancelled before it started", time.monotonic())

        def run_model() -> list[np.ndarray]:
            outputs = self._model.run(self._session, task.inputs, task.output_names, task.run_options)
            return [np.asarray(output, dtype=np.float64) for output in outputs]

        try:
            outputs = apply_fault(task.fault, run_model, task.cancelled)
        except RunCancelledError as error:
            return reply(None, str(error), time.monotonic())
        except Exception as error:  # the thread must survive any failure of a run and report it
            if task.cancelled.is_set():
                reason = "cancelled: the run was terminated"
            else:
                reason = f"{type(error).__name__}: {error}"
            return reply(None, reason, time.monotonic())

        finished = time.monotonic()
        reason = check_outputs(outputs, rows=len(task.inputs))
        if reason is not None:
            return reply(None, reason, finished)
        return reply(outputs, None, finished)


class LocalBackend(BackendMixin):
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
        self._num_workers = check_num_workers(num_workers)
        self._query_shape = getattr(model, "query_shape", None)  # checked in gather when known
        self._faults = check_faults(faults, self._num_workers)
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
        result and never keeps the call waiting past ``timeout``. Runs still going when the call stops
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
        queries, names, needed, timeout, collect_for = self._check_gather_arguments(
            queries, output_names, needed, timeout, collect_for
        )

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

    def _gather(
        self,
        queries: np.ndarray,
        names: list[str] | None,
        needed: int,
        timeout: float,
        collect_for: float | None,
    ) -> GatherResult:
        clock = CallClock.start_now(timeout, collect_for)
        call_id = next(self._call_ids)

        # Dispatch: one task per worker, all replying to a queue that only this call reads.
        faults = draw_faults(self._faults, self._num_workers, self._rng)
        replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        tasks = [
            _Task(call_id, np.ascontiguousarray(queries[:, index]), names, faults[index], replies)
            for index in range(self._num_workers)
        ]
        self._current = tasks
        for worker, task in zip(self._workers, tasks):
            worker.submit(task)

        def next_replies(wait: float) -> Iterable[_Reply]:
            try:
                reply = replies.get(timeout=wait)
            except queue.Empty:
                return ()
            if reply.call_id != call_id:
                # Unreachable while each call has its own queue; it keeps a stale result out if
                # queues are ever shared.
                logger.debug("call %d: dropped a reply of call %d", call_id, reply.call_id)
                return ()
            return (reply,)

        def on_failure(worker: int, reason: str) -> None:
            log_failure(logger, call_id, worker, reason, faults[worker])

        try:
            result = collect_replies(next_replies, self._num_workers, needed, clock, on_failure)
            result.wall_time = clock.elapsed()
        finally:
            # Stop the runs still going. Cancelling a task that already finished has no effect.
            for task in tasks:
                task.cancel()
            self._current = []

        log_late(logger, call_id, result.late)
        check_enough(result, self._num_workers, needed, timeout)
        return result


def _default_intra_op_threads(num_workers: int) -> int:
    # The CPUs this process may run on, which can be fewer than the machine has.
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    return max(1, cpus // num_workers)
