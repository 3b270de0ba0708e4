"""Exceptions and warnings raised by approxifer_onnx."""

from __future__ import annotations

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
        Results that arrived in time.
    num_workers : int
        Workers that were sent a coded query.
    needed : int
        Results the decoder needs.
    timeout : float
        The deadline in seconds.
    """

    def __init__(self, received: int, num_workers: int, needed: int, timeout: float):
        self.received = received
        self.num_workers = num_workers
        self.needed = needed
        self.timeout = timeout
        super().__init__(
            f"received {received} of {num_workers} worker results within timeout={timeout:g} s, "
            f"decoding needs {needed}; raise timeout or tolerate more stragglers"
        )


class DecodingError(ApproxiferError):
    """The results that arrived cannot be decoded (for example, too many are suspect)."""


class ProviderError(ApproxiferError, RuntimeError):
    """An execution provider that was requested with strict_providers=True is not active."""


class ProviderFallbackWarning(UserWarning):
    """onnxruntime silently fell back from a requested execution provider to another one."""


class PrivacyWarning(UserWarning):
    """A privacy setting weakens or voids the stated differential-privacy guarantee."""
