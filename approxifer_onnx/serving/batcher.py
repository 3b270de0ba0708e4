"""Request batching: group the inputs of concurrent requests into coded calls of whole groups.

Requests arrive one by one, each with one or more inputs. `RequestBatcher` queues their inputs
in arrival order and sends them to the `CodedInferenceSession` in calls of whole groups of K as
soon as K inputs are queued. When fewer than K are queued, it waits at most `max_queue_delay`
after the oldest input arrived, then sends a partial group, which the session pads. A request
may be split across two calls, and its response is ready once all of its inputs are decoded.

One call runs at a time, in a worker thread, because the session's backend runs one `gather`
at a time. Inputs that arrive meanwhile form the next call.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..session import CodedInferenceSession, RunReport

__all__ = [
    "BatchOutcome",
    "QueueFullError",
    "RequestBatcher",
    "RequestTimeoutError",
    "ServingError",
    "ShuttingDownError",
    "WorkerPoolError",
]

logger = logging.getLogger(__name__)


class ServingError(RuntimeError):
    """A well-formed request that the server cannot complete; `status` is the HTTP code."""

    status = 503


class QueueFullError(ServingError):
    """The queue of inputs waiting for the workers is full."""


class ShuttingDownError(ServingError):
    """The server is shutting down and accepts no new requests."""


class RequestTimeoutError(ServingError):
    """A request timed out before its response was ready."""

    status = 504


class WorkerPoolError(ServingError):
    """The coded call that carried a request failed, for example because too few workers answered."""


@dataclass
class BatchOutcome:
    """The result of one request: decoded outputs and what happened in its coded calls.

    Attributes
    ----------
    outputs : list of numpy.ndarray of float64, each of shape (B, *output_shape)
        One array per decodable output of the session, in `CodedInferenceSession.get_outputs`
        order.
    exact : numpy.ndarray of bool, shape (B,)
        Whether each input's estimate is exact.
    answered, late, failed, suspected : set of int
        Workers that answered, were late, failed or were suspected in any of the request's
        calls (a request split across two calls can list a worker in two sets).
    batch_ids : list of int
        The coded calls that carried the request, in order.
    batch_offsets : list of int
        For each call in `batch_ids`, the row of the call's input where the request's rows start.
    """

    outputs: list[np.ndarray]
    exact: np.ndarray
    answered: set[int] = field(default_factory=set)
    late: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    suspected: set[int] = field(default_factory=set)
    batch_ids: list[int] = field(default_factory=list)
    batch_offsets: list[int] = field(default_factory=list)


@dataclass(eq=False)
class _Request:
    """One queued request and the rows of it decoded so far."""

    inputs: np.ndarray  # (B, *query_shape), float64
    future: asyncio.Future
    arrival: float  # time.monotonic() when queued
    next_row: int = 0  # rows [0, next_row) have been taken into calls
    rows_done: int = 0
    outcome: BatchOutcome | None = None


@dataclass(frozen=True)
class _Slice:
    request: _Request
    start: int  # rows [start, stop) of the request
    stop: int


class RequestBatcher:
    """Form coded calls of whole groups of K from the inputs of concurrent requests.

    Parameters
    ----------
    session : CodedInferenceSession
        Runs each call. Only the batcher's worker thread uses it while the batcher runs.
    max_queue_delay : float, seconds, >= 0
        Maximum wait of the oldest queued input for its group to fill.
    max_queue_size : int, >= 1
        Maximum inputs queued and not yet sent; `submit` raises `QueueFullError` beyond it.
    max_batch_size : int, a multiple of K
        Maximum inputs per call.
    on_batch : callable, optional
        Called in the event loop after every call as ``on_batch(report, seconds)`` with the
        session's `RunReport`, or ``on_batch(None, seconds)`` when the call failed.
    on_queue_depth : callable, optional
        Called with the number of queued inputs whenever it changes.

    Notes
    -----
    All methods must be called from the event loop that ran `start`.
    """

    def __init__(
        self,
        session: CodedInferenceSession,
        *,
        max_queue_delay: float,
        max_queue_size: int,
        max_batch_size: int,
        on_batch: Callable[[RunReport | None, float], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
    ):
        k = session.k
        if max_batch_size < k or max_batch_size % k:
            raise ValueError(f"max_batch_size={max_batch_size} must be a positive multiple of K={k}")
        self.session = session
        self.max_queue_delay = float(max_queue_delay)
        self.max_queue_size = int(max_queue_size)
        self.max_batch_size = int(max_batch_size)
        self._on_batch = on_batch
        self._on_queue_depth = on_queue_depth

        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0
        self._arrived: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._batch_ids = itertools.count(1)
        self._in_flight: list[_Slice] = []  # the slices of the running call
        self._closing = False
        self._close_task: asyncio.Task | None = None

    @property
    def queue_depth(self) -> int:
        """Inputs queued and not yet sent to the workers."""
        return self._queued_rows

    @property
    def inputs_in_flight(self) -> int:
        """Inputs of the coded call now running, 0 between calls."""
        return sum(piece.stop - piece.start for piece in self._in_flight)

    @property
    def running(self) -> bool:
        """Whether the batcher accepts requests."""
        return self._dispatcher is not None and not self._closing

    async def start(self) -> None:
        """Start the dispatcher task in the running event loop."""
        if self._dispatcher is not None:
            raise RuntimeError("RequestBatcher.start() was already called")
        self._arrived = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="approxifer-batch")
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop(), name="approxifer-batcher")

    async def submit(self, inputs: np.ndarray, timeout: float) -> BatchOutcome:
        """Queue the inputs of one request and wait for their decoded outputs.

        Parameters
        ----------
        inputs : numpy.ndarray, shape (B, *query_shape), B >= 1
        timeout : float, seconds, > 0
            Time until the request fails with `RequestTimeoutError`.

        Raises
        ------
        QueueFullError
            When the queue cannot take B more inputs.
        ShuttingDownError
            When the batcher is closing or not started.
        RequestTimeoutError
            When the response is not ready within `timeout`.
        WorkerPoolError
            When the coded call failed.
        """
        if not self.running:
            raise ShuttingDownError("the server is shutting down and accepts no new requests")
        rows = len(inputs)
        if self._queued_rows + rows > self.max_queue_size:
            raise QueueFullError(
                f"the request queue is full: {self._queued_rows} inputs are waiting and the limit is "
                f"{self.max_queue_size}; retry later"
            )

        request = _Request(inputs, asyncio.get_running_loop().create_future(), time.monotonic())
        self._queue.append(request)
        self._set_queued_rows(self._queued_rows + rows)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except TimeoutError:
            self._withdraw(request)
            raise RequestTimeoutError(f"the request timed out after {timeout:g} s without a response") from None

    async def close(self, timeout: float) -> None:
        """Stop accepting requests, complete the queued ones, and fail what is left after `timeout`.

        Queued inputs are sent at once, without waiting for their groups to fill. Requests
        without a response after `timeout` seconds fail with `ShuttingDownError`. Calling it
        again waits for the first call to finish.
        """
        if self._dispatcher is None:
            return
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close(timeout))
        await asyncio.shield(self._close_task)

    async def _close(self, timeout: float) -> None:
        self._closing = True
        self._arrived.set()
        logger.info("batcher closing: %d queued inputs to process within %g s", self._queued_rows, timeout)
        done, _ = await asyncio.wait({self._dispatcher}, timeout=timeout)
        stranded = [piece.request for piece in self._in_flight]
        if not done:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        self._fail_waiting(stranded, ShuttingDownError("the server shut down before responding to the request"))
        # A call still running in the thread cannot be interrupted here; session.close() cancels it.
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the dispatcher ----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wait_for_batch()
            slices = self._take_batch()
            if not slices:
                if self._closing:
                    return
                continue
            await self._run_batch(slices)

    async def _wait_for_batch(self) -> None:
        """Return once a call should be sent: K inputs queued, the delay passed, or closing."""
        while True:
            if self._closing or self._queued_rows >= self.session.k:
                return
            self._arrived.clear()
            if not self._queue:
                await self._arrived.wait()
                continue
            remaining = self._queue[0].arrival + self.max_queue_delay - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Slice]:
        """Take whole groups of K queued rows (all rows, if fewer than K), oldest first."""
        k = self.session.k
        available = self._queued_rows
        count = available if available < k else min(self.max_batch_size, available // k * k)
        slices = []
        while count > 0 and self._queue:
            request = self._queue[0]
            take = min(count, len(request.inputs) - request.next_row)
            slices.append(_Slice(request, request.next_row, request.next_row + take))
            request.next_row += take
            count -= take
            if request.next_row == len(request.inputs):
                self._queue.popleft()
        self._set_queued_rows(self._queued_rows - sum(piece.stop - piece.start for piece in slices))
        return slices

    async def _run_batch(self, slices: list[_Slice]) -> None:
        batch_id = next(self._batch_ids)
        inputs = np.concatenate([piece.request.inputs[piece.start : piece.stop] for piece in slices])
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        self._in_flight = slices
        try:
            outputs, report = await loop.run_in_executor(self._executor, self._run_session, inputs)
            self._notify_batch(report, time.monotonic() - started)
            self._deliver(batch_id, slices, outputs, report)
        except Exception as error:  # any failure of the call fails its requests, never the loop
            seconds = time.monotonic() - started
            logger.warning("batch %d of %d inputs failed after %.3f s: %s", batch_id, len(inputs), seconds, error)
            failure = WorkerPoolError(f"the coded call failed: {error}")
            for piece in slices:
                if not piece.request.future.done():
                    piece.request.future.set_exception(failure)
            self._notify_batch(None, seconds)
        finally:
            self._in_flight = []

    def _run_session(self, inputs: np.ndarray) -> tuple[list[np.ndarray], RunReport]:
        # Runs in the batcher's single worker thread, so last_run belongs to this call.
        feed = {self.session.get_inputs()[0].name: inputs}
        outputs = self.session.run(None, feed)
        return outputs, self.session.last_run

    def _deliver(self, batch_id: int, slices: list[_Slice], outputs: list[np.ndarray], report: RunReport) -> None:
        exact = np.concatenate([np.asarray(group.exact, dtype=bool) for group in report.groups])
        first = report.groups[0]
        offset = 0
        for piece in slices:
            request = piece.request
            rows = piece.stop - piece.start
            if request.outcome is None:
                count = len(request.inputs)
                request.outcome = BatchOutcome(
                    outputs=[np.empty((count, *output.shape[1:])) for output in outputs],
                    exact=np.zeros(count, dtype=bool),
                )
            outcome = request.outcome
            for target, output in zip(outcome.outputs, outputs):
                target[piece.start : piece.stop] = output[offset : offset + rows]
            outcome.exact[piece.start : piece.stop] = exact[offset : offset + rows]
            outcome.answered.update(first.answered)
            outcome.late.update(first.late)
            outcome.failed.update(first.failed)
            outcome.suspected.update(first.suspected)
            outcome.batch_ids.append(batch_id)
            outcome.batch_offsets.append(offset)
            offset += rows

            request.rows_done += rows
            if request.rows_done == len(request.inputs) and not request.future.done():
                request.future.set_result(outcome)

    # -- bookkeeping -------------------------------------------------------------------------

    def _withdraw(self, request: _Request) -> None:
        """Drop the rows of a timed-out request that are still queued."""
        if request in self._queue:
            self._queue.remove(request)
            self._set_queued_rows(self._queued_rows - (len(request.inputs) - request.next_row))
            request.next_row = len(request.inputs)
        request.future.cancel()  # rows already sent are decoded, and their results dropped

    def _fail_waiting(self, in_flight: list[_Request], error: ServingError) -> None:
        """Fail the queued requests and those of `in_flight` that are still unanswered."""
        for request in [*self._queue, *in_flight]:
            if not request.future.done():
                request.future.set_exception(error)
        self._queue.clear()
        self._set_queued_rows(0)

    def _set_queued_rows(self, rows: int) -> None:
        self._queued_rows = rows
        if self._on_queue_depth is not None:
            self._on_queue_depth(rows)

    def _notify_batch(self, report: RunReport | None, seconds: float) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch(report, seconds)
        except Exception:  # a broken observer must not stop the batcher
            logger.exception("the on_batch callback failed")

