"""Straggler models of the latency benchmark: injected delays and real CPU contention.

Every strategy draws its faults from the same `StragglerModel`, one fault per run, so a worker
that a strategy starts twice (a hedged backup) draws twice. The contended worker is real: the
model pins one worker thread and several busy-loop processes to one CPU.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

from ..faults import NO_FAULT, DelayDistribution, FaultPlan, WorkerFault

__all__ = ["BusyLoops", "StragglerModel", "parse_straggler_model"]

logger = logging.getLogger(__name__)

# The worker that is persistently slow or contended. Worker 0 serves query 0 in the uncoded,
# replicated and hedged strategies and the first coded query in the coded ones.
AFFECTED_WORKER = 0

BUSY_LOOP_PROGRAM = "while True:\n    pass\n"


@dataclass(frozen=True)
class StragglerModel:
    """The straggler model of every run in one benchmark cell.

    Parameters
    ----------
    name : str
        Label in the results, e.g. ``"p=0.05"``, ``"slow-worker"`` or ``"cpu-contention"``.
    plan : FaultPlan or None
        Injected faults, drawn for every run.
    busy_processes : int, >= 0
        Busy-loop processes that share one CPU with worker `AFFECTED_WORKER` (0: none).
    """

    name: str
    plan: FaultPlan | None = None
    busy_processes: int = 0

    def draw(self, workers: list[int], pool_size: int, rng: np.random.Generator) -> list[WorkerFault]:
        """Draw the fault of each listed pool worker for one run each."""
        if self.plan is None:
            return [NO_FAULT] * len(workers)
        faults = self.plan.draw(pool_size, rng)
        return [faults[worker] for worker in workers]

    def describe(self) -> str:
        """Return the fault plan's text form, or the contention setup."""
        if self.busy_processes:
            return f"worker {AFFECTED_WORKER} shares one CPU with {self.busy_processes} busy-loop processes"
        return self.plan.to_text() if self.plan is not None else "none"


def parse_straggler_model(text: str, *, delay: str, slow_delay: float, busy_processes: int) -> StragglerModel:
    """Build a straggler model from its name.

    Parameters
    ----------
    text : str
        ``"p=P"`` (each run late with probability P by `delay`), ``"slow-worker"`` (worker 0
        late by `slow_delay` seconds in every run), ``"cpu-contention"`` or ``"none"``.
    delay : str
        Delay distribution of the random late runs, e.g. ``"pareto:0.05:1.5"``.
    slow_delay : float, seconds, > 0
    busy_processes : int, >= 1

    Raises
    ------
    ValueError
        For an unknown name or an invalid probability.
    """
    text = text.strip()
    if text.startswith("p="):
        try:
            probability = float(text[2:])
        except ValueError:
            raise ValueError(f"straggler model {text!r}: {text[2:]!r} is not a probability") from None
        plan = FaultPlan(probability=probability, random_delay=DelayDistribution.parse(delay))
        return StragglerModel(text, plan)
    if text == "slow-worker":
        return StragglerModel(text, FaultPlan(delays={AFFECTED_WORKER: slow_delay}))
    if text == "cpu-contention":
        if busy_processes < 1:
            raise ValueError(f"cpu-contention needs busy_processes >= 1, got {busy_processes}")
        return StragglerModel(text, None, busy_processes)
    if text == "none":
        return StragglerModel(text)
    raise ValueError(
        f"unknown straggler model {text!r}; use p=PROBABILITY (e.g. p=0.05), slow-worker, "
        "cpu-contention or none"
    )


class BusyLoops:
    """Busy-loop processes pinned, with one worker thread, to the last CPU this process may use.

    Use it as a context manager: entering starts the processes and pins the thread, leaving
    terminates the processes by pid and restores the thread's CPUs.

    Parameters
    ----------
    count : int, >= 1
        Busy-loop processes.
    thread_id : int
        Native id of the worker thread to pin next to them.
    """

    def __init__(self, count: int, thread_id: int):
        self.count = count
        self.thread_id = thread_id
        self.cpu = max(os.sched_getaffinity(0))
        self.pids: list[int] = []
        self._processes: list[subprocess.Popen] = []
        self._previous_cpus: set[int] | None = None

    def __enter__(self) -> BusyLoops:
        try:
            for _ in range(self.count):
                process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP_PROGRAM])
                self._processes.append(process)
                os.sched_setaffinity(process.pid, {self.cpu})
            self.pids = [process.pid for process in self._processes]
            self._previous_cpus = os.sched_getaffinity(self.thread_id)
            os.sched_setaffinity(self.thread_id, {self.cpu})
        except BaseException:
            self.__exit__()
            raise
        logger.info("started busy loops %s on CPU %d next to thread %d", self.pids, self.cpu, self.thread_id)
        return self

    def __exit__(self, *exc_info) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._previous_cpus is not None:
            os.sched_setaffinity(self.thread_id, self._previous_cpus)
            self._previous_cpus = None
        if self._processes:
            logger.info("stopped busy loops %s", [process.pid for process in self._processes])
        self._processes = []
