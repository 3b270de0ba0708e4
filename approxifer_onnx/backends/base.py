"""The worker backend contract: what `gather` returns and what every backend provides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend", "GatherResult"]


@dataclass
class GatherResult:
    """The results of one `Backend.gather` call.

    Every worker appears in exactly one of ``outputs``, ``late`` and ``failed``.

    Attributes
    ----------
    outputs : dict of int to list of numpy.ndarray
        Worker index -> its outputs, one float64 array of shape (G, C) per requested output
        name, all finite.
    late : tuple of int
        Workers, sorted, that were still running when the call stopped (at the deadline, or
        once enough results had arrived). Their runs were cancelled.
    failed : dict of int to str
        Worker index -> why its result was rejected: the exception it raised, non-finite
        outputs, or a cancellation before the call stopped.
    elapsed : dict of int to float
        Worker index -> seconds from the start of the call until the worker's run ended, for
        every worker in ``outputs`` or ``failed``.
    wall_time : float
        Seconds the whole call took.
    """

    outputs: dict[int, list[np.ndarray]] = field(default_factory=dict)
    late: tuple[int, ...] = ()
    failed: dict[int, str] = field(default_factory=dict)
    elapsed: dict[int, float] = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def received(self) -> tuple[int, ...]:
        """Workers, sorted, whose valid results arrived."""
        return tuple(sorted(self.outputs))

    def available_mask(self, num_workers: int) -> np.ndarray:
        """Return the boolean mask of shape (N,) that is True for the workers in `received`."""
        mask = np.zeros(num_workers, dtype=bool)
        mask[list(self.outputs)] = True
        return mask

    def stack(self, num_workers: int, output_index: int = 0) -> np.ndarray:
        """Stack one output of every worker into the decoder's input.

        Parameters
        ----------
        num_workers : int
            N, the workers in the call.
        output_index : int
            Position of the output in the requested output names.

        Returns
        -------
        numpy.ndarray of float64, shape (G, N, C)
            Row ``[:, i]`` contains worker i's output, or zeros where worker i sent no valid
            result (zeros, not NaN, so that a zero decoding weight cancels the row).
        """
        if not self.outputs:
            raise ValueError("no worker result arrived, so there is nothing to stack")
        first = next(iter(self.outputs.values()))[output_index]
        stacked = np.zeros((first.shape[0], num_workers, *first.shape[1:]))
        for worker, outputs in self.outputs.items():
            stacked[:, worker] = outputs[output_index]
        return stacked


@runtime_checkable
class Backend(Protocol):
    """A set of N workers that each run the model on one coded query per group.

    Implementations run one `gather` at a time and release every thread or process in `close`.
    """

    @property
    def num_workers(self) -> int:
        """N, the number of workers."""
        ...

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

        Parameters
        ----------
        queries : numpy.ndarray, shape (G, N, *query_shape)
            The coded queries of G groups, in float64 or the model's input dtype.
        output_names : sequence of str or None
            Model outputs to return; None returns all of them.
        needed : int, 1 <= needed <= N
            Valid results that decoding needs.
        timeout : float, seconds
            Deadline of the call, counted from its start.
        collect_for : float or None, seconds
            If set, keep collecting after ``needed`` results until all N arrived or this many
            seconds passed since the start; None returns as soon as ``needed`` arrived.

        Raises
        ------
        NotEnoughResultsError
            When fewer than ``needed`` valid results arrive before ``timeout``.
        """
        ...

    def close(self) -> None:
        """Cancel outstanding work and release every worker."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
