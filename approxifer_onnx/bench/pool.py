"""A pool of onnxruntime workers that every benchmarked strategy shares.

Each worker owns one onnxruntime session with one intra-op thread and one thread that serves
its runs in order, as `approxifer_onnx.backends.LocalBackend` does. Unlike the backend, the pool
lets the caller start single runs on chosen workers at chosen times, which replication and
hedged requests need. Every run applies its injected fault with `approxifer_onnx.faults.apply_fault`
and is cancelled through ``RunOptions.terminate`` and an event, so a cancelled worker is free
for its next run as soon as its current operator ends.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from ..backends._common import CallClock, TaskThread, WorkerReply, check_enough, collect_replies
from ..backends.base import GatherResult
from ..faults import RunCancelledError, WorkerFault, apply_fault
from ..model import OnnxModel

__all__ = ["PoolBackend", "Reply", "Run", "WorkerPool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """The end of one run.

    Attributes
    ----------
    tag : object
        The caller's label of the run, such as a query index.
    worker : int
        Pool index of the worker that ran it.
    output : numpy.ndarray of float64, shape (rows, C), or None
        The model's first decodable output; None when the run failed or was cancelled.
    error : str or None
        Why there is no output.
    started, finished : float
        `time.monotonic` at submission and at the end of the run.
    """

    tag: Any
    worker: int
    output: np.ndarray | None
    error: str | None
    started: float
    finished: float

    @property
    def seconds(self) -> float:
        """Seconds from submission to the end of the run."""
        return self.finished - self.started


@dataclass
class Run:
    """One submitted run; `cancel` stops it if it is still waiting or running."""

    tag: Any
    inputs: np.ndarray  # (rows, *query_shape)
    fault: WorkerFault
    replies: queue.SimpleQueue
    started: float = field(default_factory=time.monotonic)
    run_options: ort.RunOptions = field(default_factory=ort.RunOptions)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Wake an injected delay and stop the model between two operators."""
        self.cancelled.set()
        self.run_options.terminate = True


class _PoolWorker(TaskThread):
    def __init__(self, index: int, model: OnnxModel, session: ort.InferenceSession):
        self.index = index
        self.native_id: int | None = None
        self._model = model
        self._session = session
        self._ready = threading.Event()
        super().__init__(name=f"bench-worker-{index}")
        self._ready.wait()

    def _serve(self) -> None:
        self.native_id = threading.get_native_id()
        self._ready.set()
        super()._serve()

    def _execute(self, run: Run) -> Reply:
        def reply(output: np.ndarray | None, error: str | None) -> Reply:
            return Reply(run.tag, self.index, output, error, run.started, time.monotonic())

        if run.cancelled.is_set():
            return reply(None, "cancelled before it started")

        def run_model() -> list[np.ndarray]:
            return self._model.run(self._session, run.inputs, None, run.run_options)

        try:
            outputs = apply_fault(run.fault, run_model, run.cancelled)
        except RunCancelledError as error:
            return reply(None, str(error))
        except Exception as error:  # a failed run is a straggler; the thread must survive it
            return reply(None, "cancelled" if run.cancelled.is_set() else f"{type(error).__name__}: {error}")
        output = outputs[0]
        if not np.isfinite(output).all():
            return reply(None, "non-finite output")
        return reply(output, None)


class WorkerPool:
    """Workers with one onnxruntime session and one thread each.

    Parameters
    ----------
    model : OnnxModel
    num_workers : int, >= 1
    intra_op_threads : int, >= 1
        onnxruntime threads per worker session.
    """

    def __init__(self, model: OnnxModel, num_workers: int, *, intra_op_threads: int = 1):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got num_workers={num_workers!r}")
        self.model = model
        self._workers = [
            _PoolWorker(index, model, model.new_session(intra_op_threads=intra_op_threads))
            for index in range(num_workers)
        ]
        logger.info("benchmark pool started %d workers on %s", num_workers, model.source)

    @property
    def num_workers(self) -> int:
        """Workers in the pool."""
        return len(self._workers)

    def native_id(self, worker: int) -> int:
        """Return the operating-system thread id of `worker`, for CPU pinning."""
        return self._workers[worker].native_id

    def submit(self, worker: int, inputs: np.ndarray, fault: WorkerFault, replies: queue.SimpleQueue,
               tag: Any = None) -> Run:
        """Start one run of the model on `inputs` (rows, *query_shape) on `worker`.

        The `Reply` goes to `replies`; a run submitted to a busy worker waits for it.
        """
        run = Run(tag, inputs, fault, replies)
        self._workers[worker].submit(run)
        return run

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every worker is idle; return False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        return all(worker.wait_idle(max(0.0, deadline - time.monotonic())) for worker in self._workers)

    def close(self) -> None:
        """Stop every worker thread."""
        for worker in self._workers:
            worker.stop()
            worker.join(timeout=10.0)
        self._workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def pin_thread(native_id: int, cpus: set[int]) -> set[int]:
    """Pin one thread to `cpus` and return the CPUs it was allowed on before."""
    previous = os.sched_getaffinity(native_id)
    os.sched_setaffinity(native_id, cpus)
    return previous


class PoolBackend:
    """The `Backend` protocol on the first N workers of a pool, with injected faults.

    A `CodedInferenceSession` built with ``backend=PoolBackend(...)`` runs on the same workers,
    under the same straggler model, as the uncoded strategies.

    Parameters
    ----------
    pool : WorkerPool
    num_workers : int
        N; worker i of the code runs on pool worker i.
    draw_faults : callable
        ``draw_faults(workers) -> list of WorkerFault``, one fault per listed pool worker.
    """

    def __init__(self, pool: WorkerPool, num_workers: int, draw_faults):
        if num_workers > pool.num_workers:
            raise ValueError(f"num_workers={num_workers} exceeds the pool's {pool.num_workers} workers")
        self._pool = pool
        self._num_workers = num_workers
        self._draw_faults = draw_faults

    @property
    def num_workers(self) -> int:
        """N, the workers of the code."""
        return self._num_workers

    def gather(self, queries, output_names=None, *, needed, timeout, collect_for=None) -> GatherResult:
        """Send ``queries[:, i]`` to pool worker i and collect results like `LocalBackend.gather`."""
        del output_names  # the pool returns the model's first decodable output
        clock = CallClock.start_now(timeout, collect_for)
        workers = list(range(self._num_workers))
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        runs = [
            self._pool.submit(worker, np.ascontiguousarray(queries[:, worker]), fault, replies, tag=worker)
            for worker, fault in zip(workers, self._draw_faults(workers))
        ]

        def next_replies(wait: float) -> tuple[WorkerReply, ...]:
            try:
                reply = replies.get(timeout=wait)
            except queue.Empty:
                return ()
            outputs = None if reply.output is None else [reply.output]
            return (WorkerReply(reply.worker, outputs, reply.error, reply.finished),)

        try:
            result = collect_replies(next_replies, self._num_workers, needed, clock)
        finally:
            for run in runs:
                run.cancel()
        result.wall_time = clock.elapsed()
        check_enough(result, self._num_workers, needed, timeout)
        return result

    def close(self) -> None:
        """Leave the pool running: its owner closes it."""

    def __enter__(self) -> PoolBackend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
