"""Workers as Ray actors, each holding its own onnxruntime session, on one machine or a cluster.

Needs the ``ray`` extra. Each worker is an async Ray actor that loads the model from bytes sent
by the driver, so the workers need no shared file system. `RayBackend.gather` sends one coded
batch to every actor, waits with ``ray.wait`` until enough results arrived or the deadline
passed, and cancels the calls still running with ``ray.cancel``. Async actors stop a cancelled
call quickly. A synchronous actor would finish the run first, because ``ray.cancel`` cannot
interrupt it. A dead actor, or one being restarted, makes its call fail or arrive late, so it
counts as a straggler like any other.

Faults of a `FaultPlan` are drawn in the driver with the backend's `rng`, exactly as
`LocalBackend` draws them, and each actor applies its fault with `apply_fault`. The same plan and
seed therefore give the same faulty workers on both backends.

A local Ray started here listens on 127.0.0.1 only, because `start_local_ray` sets
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before Ray is first imported. Without it, Ray 2.60
binds the machine's external address.
"""

from __future__ import annotations

import asyncio
import logging
import numbers
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..faults import FaultPlan, WorkerFault, apply_fault
from ._common import (
    BackendMixin,
    CallClock,
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

__all__ = ["RayBackend", "import_ray", "start_local_ray"]

logger = logging.getLogger(__name__)

# Environment that a local Ray needs to bind 127.0.0.1 and to send no usage statistics. Ray reads
# it when it is imported and when it starts its processes.
LOCAL_RAY_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Results of cancelled late calls are never fetched, which Ray would report as errors.
    "RAY_IGNORE_UNHANDLED_ERRORS": "1",
}

# Seconds that RayBackend waits for all actors to load the model.
STARTUP_TIMEOUT = 120.0

# Calls one actor runs at once. A cancelled call can still be ending when the next one starts.
ACTOR_CONCURRENCY = 4


def import_ray():
    """Import ray with the environment of a local, loopback-only instance.

    The variables are set only where the caller has not set them.

    Raises
    ------
    ImportError
        When ray is not installed, with the install command.
    """
    for name, value in LOCAL_RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "the Ray backend needs ray; install it with: pip install 'approxifer-onnx[ray]'"
        ) from error
    return ray


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start a Ray instance in this process's machine, listening on 127.0.0.1 only.

    Does nothing when Ray is already initialized.

    Parameters
    ----------
    num_cpus : int or None
        CPUs Ray may schedule on; None lets Ray count them.
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    logger.info("started a local Ray instance on 127.0.0.1 with num_cpus=%s", num_cpus)


class _RayWorker:
    """The actor body: one onnxruntime session and the injected fault of each call."""

    def __init__(self, index: int, model_bytes: bytes, providers: list | None, intra_op_threads: int):
        import onnx

        from ..model import OnnxModel

        self.index = index
        self.model = OnnxModel(onnx.load_from_string(model_bytes), providers=providers)
        self.session = self.model.new_session(intra_op_threads=intra_op_threads)

    def ready(self) -> int:
        return self.index

    async def run(
        self, queries: np.ndarray, output_names: list[str] | None, fault_kind: str, fault_delay: float
    ) -> list[np.ndarray]:
        """Run the model on ``queries`` (G, *query_shape) under the injected fault."""
        import onnxruntime as ort

        fault = WorkerFault(fault_kind, fault_delay)
        cancelled = threading.Event()
        run_options = ort.RunOptions()

        def run_model() -> list[np.ndarray]:
            return self.model.run(self.session, queries, output_names, run_options)

        # The blocking run goes to a thread so that ray.cancel reaches this coroutine at once.
        call = asyncio.get_running_loop().run_in_executor(None, apply_fault, fault, run_model, cancelled)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            cancelled.set()
            run_options.terminate = True
            raise


class RayBackend(BackendMixin):
    """N workers as async Ray actors, each with its own onnxruntime session.

    Worker i runs ``queries[:, i]`` of a `gather` call as one batch. Calls from several threads
    are safe but run one after another, because a lock admits one `gather` at a time.

    Parameters
    ----------
    model : OnnxModel or str or Path
        The model; its ONNX bytes are sent to every actor.
    num_workers : int, >= 1
        N, the number of actors.
    faults : FaultPlan or None
        Faults to inject; a new draw is made for every call, in the driver.
    rng : numpy.random.Generator, int or None
        Randomness of the fault draws.
    address : str or None
        Address of an existing Ray cluster to join (as for ``ray.init``); None starts a local
        Ray on 127.0.0.1 unless Ray is already initialized in this process.
    num_cpus : float, >= 0
        CPUs each actor reserves. The default 0 lets N actors share a small machine; reserving a
        whole CPU each leaves actors unscheduled when N exceeds the CPUs.
    intra_op_threads : int, >= 1
        onnxruntime threads per actor session.
    max_restarts : int, >= -1
        How often Ray restarts a dead actor (-1: always). Calls sent while an actor is dead or
        restarting fail or arrive late, so they count as stragglers.
    providers : list or None
        onnxruntime execution providers of the actors; None uses the model's requested ones.
    """

    def __init__(
        self,
        model: Any,
        num_workers: int,
        *,
        faults: FaultPlan | None = None,
        rng: np.random.Generator | int | None = None,
        address: str | None = None,
        num_cpus: float = 0.0,
        intra_op_threads: int = 1,
        max_restarts: int = -1,
        providers: Sequence[Any] | None = None,
    ):
        num_workers = check_num_workers(num_workers)
        if not isinstance(num_cpus, numbers.Real) or isinstance(num_cpus, bool) or not num_cpus >= 0:
            raise ValueError(f"num_cpus must be a number >= 0, got num_cpus={num_cpus!r}")
        if not isinstance(max_restarts, numbers.Integral) or max_restarts < -1:
            raise ValueError(f"max_restarts must be an int >= -1 (-1: always restart), got {max_restarts!r}")
        self._num_workers = num_workers
        self._query_shape = getattr(model, "query_shape", None)
        self._faults = check_faults(faults, self._num_workers)
        self._rng = np.random.default_rng(rng)
        self._lock = threading.Lock()
        self._closed = False
        self._call_ids = 0

        ray = import_ray()
        self._ray = ray
        self._started_ray = False
        if ray.is_initialized():
            if address is not None:
                logger.warning("Ray is already initialized in this process, so address=%s is ignored", address)
        elif address is None:
            start_local_ray()
            self._started_ray = True
        else:
            # NOTE: joining a cluster started with `ray start --head` is not covered by the tests.
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            logger.info("joined the Ray cluster at %s", address)
            self._started_ray = True

        model_bytes, model_providers = _model_bytes(model)
        actor_class = ray.remote(_RayWorker).options(
            num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0, max_concurrency=ACTOR_CONCURRENCY
        )
        chosen = list(providers) if providers is not None else model_providers
        # Held for the backend's lifetime, because Ray rebuilds a restarted actor from this object.
        self._model_ref = ray.put(model_bytes)
        self._actors = [
            actor_class.remote(index, self._model_ref, chosen, int(intra_op_threads))
            for index in range(self._num_workers)
        ]
        try:
            ray.get([actor.ready.remote() for actor in self._actors], timeout=STARTUP_TIMEOUT)
        except BaseException:
            self.close()
            raise
        logger.info("started %d Ray actors with num_cpus=%g each", self._num_workers, num_cpus)

    def kill_worker(self, index: int, *, restart: bool = True) -> None:
        """Kill the process of actor `index`, as a crash would.

        With ``restart=True`` Ray restarts it within its ``max_restarts``; calls meanwhile fail or
        arrive late and count as stragglers. With ``restart=False`` it stays dead and every later
        call to it fails.
        """
        if not 0 <= index < self._num_workers:
            raise ValueError(f"worker index must be in [0, {self._num_workers - 1}], got {index}")
        self._ray.kill(self._actors[index], no_restart=not restart)
        logger.warning("killed Ray actor of worker %d (restart=%s)", index, restart)

    def gather(
        self,
        queries: np.ndarray,
        output_names: Sequence[str] | None = None,
        *,
        needed: int,
        timeout: float,
        collect_for: float | None = None,
    ) -> GatherResult:
        """Send ``queries[:, i]`` to actor i and collect the results with ``ray.wait``.

        Parameters, return value and errors are those of `LocalBackend.gather`. The call returns
        once ``needed`` valid results arrived, or, with ``collect_for``, once all N arrived or
        ``collect_for`` seconds passed. Calls still running are then cancelled.

        Raises
        ------
        NotEnoughResultsError
            When fewer than ``needed`` valid results arrive before ``timeout``.
        RuntimeError
            When the backend is closed.
        """
        queries, names, needed, timeout, collect_for = self._check_gather_arguments(
            queries, output_names, needed, timeout, collect_for
        )

        with self._lock:
            if self._closed:
                raise RuntimeError("RayBackend is closed; create a new backend to run more calls")
            return self._gather(queries, names, needed, timeout, collect_for)

    def close(self) -> None:
        """Kill every actor, and shut Ray down if this backend started or joined it."""
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception as error:  # an actor that is already gone is no reason to stop
                logger.info("could not kill a Ray actor during close(): %s", error)
        if self._started_ray:
            self._ray.shutdown()
        logger.info("closed %d Ray actors", self._num_workers)

    def _gather(
        self,
        queries: np.ndarray,
        names: list[str] | None,
        needed: int,
        timeout: float,
        collect_for: float | None,
    ) -> GatherResult:
        ray = self._ray
        clock = CallClock.start_now(timeout, collect_for)
        self._call_ids += 1
        call_id = self._call_ids

        # Dispatch: one call per actor with its drawn fault.
        faults = draw_faults(self._faults, self._num_workers, self._rng)
        pending = {}  # object reference of a call still running -> worker index
        for index, (actor, fault) in enumerate(zip(self._actors, faults)):
            batch = np.ascontiguousarray(queries[:, index])
            reference = actor.run.remote(batch, names, fault.kind.value, fault.delay)
            pending[reference] = index

        def next_replies(wait: float) -> Iterator[WorkerReply]:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
            for reference in ready:
                index = pending.pop(reference)
                finished = time.monotonic()
                outputs, error = self._fetch(reference, len(queries))
                yield WorkerReply(index, outputs, error, finished)

        def on_failure(worker: int, reason: str) -> None:
            log_failure(logger, call_id, worker, reason, faults[worker])

        result = collect_replies(next_replies, self._num_workers, needed, clock, on_failure)

        # Cancel the calls still running; async actors stop them at once.
        for reference in pending:
            ray.cancel(reference)
        result.wall_time = clock.elapsed()
        log_late(logger, call_id, result.late)
        check_enough(result, self._num_workers, needed, timeout)
        return result

    def _fetch(self, reference: Any, rows: int) -> tuple[list[np.ndarray] | None, str | None]:
        """Return the outputs of a finished call, or the reason it is rejected."""
        ray = self._ray
        try:
            outputs = ray.get(reference)
        except ray.exceptions.RayActorError as error:
            return None, f"actor died or is restarting: {type(error).__name__}"
        except ray.exceptions.TaskCancelledError:
            return None, "cancelled: the run was terminated"
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            return None, f"{type(cause).__name__}: {cause}"

        outputs = [np.asarray(output, dtype=np.float64) for output in outputs]
        reason = check_outputs(outputs, rows)
        if reason is not None:
            return None, reason
        return outputs, None


def _model_bytes(model: Any) -> tuple[bytes, list | None]:
    """Return the serialized ONNX model and its requested providers, for the actors."""
    from ..model import OnnxModel

    if isinstance(model, (str, Path)):
        return Path(model).read_bytes(), None
    if isinstance(model, OnnxModel):
        providers = list(model.requested_providers) or None
        if model.path is not None:
            return Path(model.path).read_bytes(), providers
    raise TypeError(
        f"model must be an OnnxModel loaded from a file, or a path, got {type(model).__name__}"
    )
