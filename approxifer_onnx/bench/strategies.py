"""The serving strategies that the latency benchmark compares, on one shared worker pool.

Each strategy serves one group of K queries per call and reports when the last output was
ready. They differ in how many workers they provision and in which results they wait for:

=============  ==========  ===============================================================
strategy       workers     waits for
=============  ==========  ===============================================================
uncoded        K           all K workers
replication    2K          the first of the two replicas of every query
hedged         2K          the primary of every query, or a backup started after the
                           95th percentile of the run times observed so far
parity         K + 1       all K, or K - 1 of them and one parity worker that runs the model
                           on the sum of the K queries (a latency stand-in for ParM: the
                           real scheme needs a trained parity model)
approxifer     K + S       the first K of N Berrut-coded results (``first-k``), or all that
                           arrive before a deadline (``deadline``)
=============  ==========  ===============================================================
"""

from __future__ import annotations

import collections
import math
import queue
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..exceptions import NotEnoughResultsError
from ..faults import WorkerFault
from ..session import CodedInferenceSession
from .pool import PoolBackend, Reply, Run, WorkerPool

__all__ = [
    "ApproxiferStrategy",
    "GroupContext",
    "GroupOutcome",
    "HedgedStrategy",
    "ParityStrategy",
    "ReplicationStrategy",
    "Strategy",
    "UncodedStrategy",
    "build_strategies",
]

# The quantile of observed run times after which a hedged request sends its backup.
HEDGE_QUANTILE = 0.95
# Run times that the hedging threshold is computed from, and the fewest it needs.
HEDGE_WINDOW = 1000
HEDGE_MIN_SAMPLES = 20

PARITY_NOTE = (
    "latency stand-in: the parity worker runs the base model on the sum of the queries, so a "
    "reconstructed output is not meaningful; ParM needs a parity model trained for the base model"
)


@dataclass
class GroupContext:
    """What every strategy shares in one benchmark cell.

    Attributes
    ----------
    pool : WorkerPool
    draw_faults : callable
        ``draw_faults(workers) -> list of WorkerFault``: one fault per listed worker and run.
    timeout : float, seconds
        A group that lacks an output for some query by then is counted as incomplete.
    """

    pool: WorkerPool
    draw_faults: Callable[[list[int]], list[WorkerFault]]
    timeout: float


@dataclass(frozen=True)
class GroupOutcome:
    """The result of one group of K queries.

    Attributes
    ----------
    latency : float, seconds
        From the start of the call to the last output, or to the moment the call gave up.
    outputs : numpy.ndarray of float64, shape (K, C), or None
        One output row per query; None when the group is incomplete.
    runs : int
        Model runs started, cancelled ones included.
    degraded : int
        Queries whose output was reconstructed or approximated instead of computed on the query.
    """

    latency: float
    outputs: np.ndarray | None
    runs: int
    degraded: int = 0

    @property
    def complete(self) -> bool:
        """Whether every query of the group got an output."""
        return self.outputs is not None


class Strategy:
    """A way to serve groups of K queries; subclasses implement `run_group`.

    Attributes
    ----------
    name : str
    k : int
        Queries per group.
    num_workers : int
        Workers the strategy provisions for one group.
    stragglers : int or None
        S for coded strategies, None otherwise.
    accuracy_note : str or None
        Set when the outputs are not meant to be scored against labels.
    """

    name = "strategy"
    stragglers: int | None = None
    accuracy_note: str | None = None

    def __init__(self, k: int, num_workers: int):
        self.k = k
        self.num_workers = num_workers

    @property
    def workers_per_query(self) -> float:
        """Provisioned workers per query, the resource factor."""
        return self.num_workers / self.k

    def prepare(self, context: GroupContext) -> None:
        """Set up per-cell state before the first group of a cell."""

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        """Answer one group: `queries` has shape (K, *query_shape)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Return the strategy's parameters for the results."""
        return {"strategy": self.name, "k": self.k, "num_workers": self.num_workers,
                "stragglers": self.stragglers}


def _start(context: GroupContext, assignments: list[tuple[int, np.ndarray, object]],
           replies: queue.SimpleQueue) -> list[Run]:
    # assignments: (worker, inputs of shape (rows, *query_shape), tag); one fault per run.
    faults = context.draw_faults([worker for worker, _, _ in assignments])
    return [context.pool.submit(worker, inputs, fault, replies, tag)
            for (worker, inputs, tag), fault in zip(assignments, faults)]


def _next_reply(replies: queue.SimpleQueue, until: float) -> Reply | None:
    remaining = until - time.monotonic()
    if remaining <= 0:
        return None
    try:
        return replies.get(timeout=remaining)
    except queue.Empty:
        return None


def _cancel(runs) -> None:
    for run in runs:
        run.cancel()


class UncodedStrategy(Strategy):
    """K workers, one query each; the group waits for all K."""

    name = "uncoded"

    def __init__(self, k: int):
        super().__init__(k, k)

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        start = time.monotonic()
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        runs = _start(context, [(j, queries[j : j + 1], j) for j in range(self.k)], replies)
        answers: dict[int, np.ndarray] = {}
        try:
            while len(answers) < self.k:
                reply = _next_reply(replies, start + context.timeout)
                if reply is None or reply.output is None:
                    break  # timed out, or a query lost its only worker
                answers[reply.tag] = reply.output[0]
        finally:
            _cancel(runs)
        latency = time.monotonic() - start
        outputs = np.stack([answers[j] for j in range(self.k)]) if len(answers) == self.k else None
        return GroupOutcome(latency, outputs, runs=self.k)


class ReplicationStrategy(Strategy):
    """2K workers: query j runs on workers j and K + j at once; the first answer wins."""

    name = "replication"

    def __init__(self, k: int):
        super().__init__(k, 2 * k)

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        start = time.monotonic()
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        assignments = [(j, queries[j : j + 1], j) for j in range(self.k)]
        assignments += [(self.k + j, queries[j : j + 1], j) for j in range(self.k)]
        runs = _start(context, assignments, replies)
        answers: dict[int, np.ndarray] = {}
        try:
            while len(answers) < self.k:
                reply = _next_reply(replies, start + context.timeout)
                if reply is None:
                    break
                if reply.output is not None and reply.tag not in answers:
                    answers[reply.tag] = reply.output[0]
                    _cancel([runs[reply.tag], runs[self.k + reply.tag]])  # free the other replica
        finally:
            _cancel(runs)
        latency = time.monotonic() - start
        outputs = np.stack([answers[j] for j in range(self.k)]) if len(answers) == self.k else None
        return GroupOutcome(latency, outputs, runs=2 * self.k)


class HedgedStrategy(Strategy):
    """2K workers: query j runs on worker j, and a backup on worker K + j.

    The backup starts when query j has no output after the 95th percentile of the run times
    observed so far. No backup is sent until `HEDGE_MIN_SAMPLES` run times are known.
    """

    name = "hedged"

    def __init__(self, k: int):
        super().__init__(k, 2 * k)
        self.observed: collections.deque[float] = collections.deque(maxlen=HEDGE_WINDOW)

    def prepare(self, context: GroupContext) -> None:
        self.observed.clear()

    def hedge_after(self) -> float | None:
        """Seconds after which a backup is sent, None while too few run times are known."""
        if len(self.observed) < HEDGE_MIN_SAMPLES:
            return None
        return float(np.quantile(np.fromiter(self.observed, float), HEDGE_QUANTILE))

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        start = time.monotonic()
        deadline = start + context.timeout
        threshold = self.hedge_after()
        hedge_at = math.inf if threshold is None else start + threshold
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        runs: dict[int, list[Run]] = {
            j: [run] for j, run in
            enumerate(_start(context, [(j, queries[j : j + 1], j) for j in range(self.k)], replies))
        }
        answers: dict[int, np.ndarray] = {}
        started = self.k

        try:
            while len(answers) < self.k:
                reply = _next_reply(replies, min(deadline, hedge_at))
                if reply is None:
                    if time.monotonic() >= deadline:
                        break
                    # Hedge: one backup for every query still without an answer.
                    missing = [j for j in range(self.k) if j not in answers]
                    backups = _start(context, [(self.k + j, queries[j : j + 1], j) for j in missing], replies)
                    for j, run in zip(missing, backups):
                        runs[j].append(run)
                    started += len(backups)
                    hedge_at = math.inf
                    continue

                if reply.output is not None:
                    self.observed.append(reply.seconds)
                    if reply.tag not in answers:
                        answers[reply.tag] = reply.output[0]
                        _cancel(runs[reply.tag])
        finally:
            for query_runs in runs.values():
                _cancel(query_runs)
        latency = time.monotonic() - start
        outputs = np.stack([answers[j] for j in range(self.k)]) if len(answers) == self.k else None
        return GroupOutcome(latency, outputs, runs=started)


class ParityStrategy(Strategy):
    """K data workers and one parity worker that runs the model on the sum of the K queries.

    The group is done when all K data results arrived, or K - 1 of them and the parity result.
    The missing output is then the parity output minus the others. This measures ParM's
    latency only, because the base model stands in for the trained parity model ParM needs,
    so the reconstructed output is not a real estimate.
    """

    name = "parity"
    accuracy_note = PARITY_NOTE

    def __init__(self, k: int):
        super().__init__(k, k + 1)

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        start = time.monotonic()
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        parity_query = queries.astype(np.float64).sum(axis=0, keepdims=True)
        assignments = [(j, queries[j : j + 1], j) for j in range(self.k)] + [(self.k, parity_query, "parity")]
        runs = _start(context, assignments, replies)
        answers: dict[object, np.ndarray] = {}
        try:
            while not self._decodable(answers):
                reply = _next_reply(replies, start + context.timeout)
                if reply is None:
                    break
                if reply.output is not None:
                    answers[reply.tag] = reply.output[0]
        finally:
            _cancel(runs)
        latency = time.monotonic() - start
        if not self._decodable(answers):
            return GroupOutcome(latency, None, runs=self.k + 1)
        missing = [j for j in range(self.k) if j not in answers]
        for j in missing:
            answers[j] = answers["parity"] - sum(answers[i] for i in range(self.k) if i != j)
        outputs = np.stack([answers[j] for j in range(self.k)])
        return GroupOutcome(latency, outputs, runs=self.k + 1, degraded=len(missing))

    def _decodable(self, answers: dict) -> bool:
        data = sum(1 for tag in answers if tag != "parity")
        return data == self.k or (data == self.k - 1 and "parity" in answers)


class ApproxiferStrategy(Strategy):
    """N = K + S coded workers through `CodedInferenceSession` on the shared pool.

    Parameters
    ----------
    k : int
    stragglers : int
        S.
    wait : {"first-k", "deadline"}
    deadline : float, seconds, optional
        With wait="deadline": when to stop collecting results beyond the first K, counted from
        the start of the call. Required for "deadline".
    nodes : str, optional
        Worker node family; the session's default when None.
    """

    name = "approxifer"

    def __init__(self, k: int, stragglers: int, wait: str = "first-k", deadline: float | None = None,
                 nodes: str | None = None):
        super().__init__(k, k + stragglers)
        if wait == "deadline" and deadline is None:
            raise ValueError("ApproxiferStrategy wait='deadline' needs deadline seconds, got None")
        self.stragglers = stragglers
        self.wait = wait
        self.deadline = deadline
        self.nodes = nodes
        self.name = f"approxifer-{wait}-s{stragglers}"
        self.session: CodedInferenceSession | None = None

    def prepare(self, context: GroupContext) -> None:
        backend = PoolBackend(context.pool, self.num_workers, context.draw_faults)
        options = {} if self.nodes is None else {"nodes": self.nodes}
        self.session = CodedInferenceSession(
            context.pool.model, self.k, self.stragglers, wait=self.wait, timeout=context.timeout,
            deadline=self.deadline, backend=backend, **options,
        )
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = context.pool.model.decodable_output_names[0]

    def run_group(self, context: GroupContext, queries: np.ndarray) -> GroupOutcome:
        start = time.monotonic()
        try:
            outputs = self.session.run([self._output_name], {self._input_name: queries})[0]
        except NotEnoughResultsError:
            return GroupOutcome(time.monotonic() - start, None, runs=self.num_workers)
        latency = time.monotonic() - start
        exact = self.session.last_run.groups[0].exact
        return GroupOutcome(latency, outputs, runs=self.num_workers, degraded=self.k - sum(exact))

    def describe(self) -> dict:
        described = super().describe()
        described.update(wait=self.wait, deadline_ms=None if self.deadline is None else 1000 * self.deadline,
                         nodes=self.session.code.node_family if self.session is not None else self.nodes)
        return described


STRATEGY_NAMES = ("uncoded", "replication", "hedged", "parity", "approxifer")


def build_strategies(k: int, *, names=STRATEGY_NAMES, stragglers=(1, 2), waits=("first-k", "deadline"),
                     deadline: float | None = None) -> list[Strategy]:
    """Build the benchmarked strategies for groups of `k` queries.

    Parameters
    ----------
    k : int, >= 1
    names : iterable of str
        Any of `STRATEGY_NAMES`.
    stragglers : iterable of int
        S values of the ApproxIFER strategies.
    waits : iterable of {"first-k", "deadline"}
    deadline : float, seconds, optional
        The ApproxIFER deadline; needed when "deadline" is among `waits`.
    """
    unknown = sorted(set(names) - set(STRATEGY_NAMES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGY_NAMES)}")
    builders = {"uncoded": UncodedStrategy, "replication": ReplicationStrategy,
                "hedged": HedgedStrategy, "parity": ParityStrategy}
    strategies: list[Strategy] = [builders[name](k) for name in STRATEGY_NAMES[:-1] if name in names]
    if "approxifer" in names:
        for wait in waits:
            for s in stragglers:
                strategies.append(ApproxiferStrategy(k, s, wait, deadline if wait == "deadline" else None))
    return strategies
