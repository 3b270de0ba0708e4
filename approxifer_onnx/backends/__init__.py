"""Worker backends: run one coded query per worker and gather the results before a deadline."""

from .base import Backend, GatherResult
from .local import LocalBackend

__all__ = ["Backend", "GatherResult", "LocalBackend"]
