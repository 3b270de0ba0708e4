"""Exceptions and warnings raised by approxifer_onnx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "ApproxiferError",
    "DataError",
    "DecodingError",
    "ModelCompatibilityError",
    "NotEnoughResultsError",
    "PrivacyWarning",
    "ProviderError",
    "ProviderFallbackWarning",
]


class ApproxiferError(Exception):
    """Base class of the errors raised by this package."""


class ModelCompatibilityError(ApproxiferError, ValueError):
    """An ONNX model cannot be loaded by the installed runtime or cannot be coded."""


class DataError(ApproxiferError, ValueError):
    """A data file is unreadable, malformed or inconsistent with its companions."""


class NotEnoughResultsError(ApproxiferError, TimeoutError):
    """Fewer worker results arrived before the deadline than decoding needs.

    Parameters
    ----------
    received : int
        Valid results that arrived.
    num_workers : int
        Workers that were sent a coded query.
    needed : int
        Results the decoder needs.
    timeout : float
        The deadline in seconds.
    failed : dict of int to str, optional
        Workers that raised, returned non-finite values or were cancelled, with the reason.
    late : sequence of int, optional
        Workers still running when the call gave up.
    """

    def __init__(
        self,
        received: int,
        num_workers: int,
        needed: int,
        timeout: float,
        failed: Mapping[int, str] | None = None,
        late: Sequence[int] = (),
    ):
        self.received = received
        self.num_workers = num_workers
        self.needed = needed
        self.timeout = timeout
        self.failed = dict(failed or {})
        self.late = tuple(late)
        causes = []
        if self.failed:
            first = next(iter(self.failed.values()))
            causes.append(
                f"worker{'s' if len(self.failed) > 1 else ''} {_join(self.failed)} failed "
                f"({first})"
            )
        if self.late:
            causes.append(
                f"worker{'s' if len(self.late) > 1 else ''} {_join(self.late)} had not answered"
            )
        because = f": {'; '.join(causes)}" if causes else ""
        fix = "tolerate more stragglers (raise stragglers or num_workers)"
        if self.late:
            fix += f" or raise the timeout (now {timeout:g} s)"
        super().__init__(
            f"received {received} of {num_workers} worker results, decoding needs {needed}"
            f"{because}; {fix}"
        )


def _join(workers) -> str:
    return ", ".join(str(worker) for worker in sorted(workers))


class DecodingError(ApproxiferError):
    """The results that arrived cannot be decoded (for example, too many are suspect)."""


class ProviderError(ApproxiferError, RuntimeError):
    """An execution provider that was requested with strict_providers=True is not active."""


class ProviderFallbackWarning(UserWarning):
    """onnxruntime silently fell back from a requested execution provider to another one."""


class PrivacyWarning(UserWarning):
    """A privacy setting weakens or voids the stated differential-privacy guarantee."""
