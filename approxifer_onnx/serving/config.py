"""Settings of the prediction server, and the config file that can hold them.

`ServeConfig` validates every setting once, at startup. `load_config_file` reads a TOML or JSON
file of ``option = value`` pairs whose keys are the ``serve`` command's option names, with
dashes or underscores (``max-queue-delay`` or ``max_queue_delay``).
"""

from __future__ import annotations

import json
import math
import numbers
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LOG_FORMATS", "ServeConfig", "load_config_file"]

#: Formats of the server's log lines: plain text, or one JSON object per line.
LOG_FORMATS = ("text", "json")

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server: network, request batching, limits and shutdown.

    Parameters
    ----------
    host : str
        Address to listen on. The default, 127.0.0.1, accepts connections from this machine only.
    port : int, 0 <= port <= 65535
        TCP port; 0 lets the operating system choose a free one.
    model_name : str or None
        Name of the model in the URLs (``/v2/models/{model_name}``); None uses the file's stem.
    max_queue_delay : float, seconds, >= 0
        Maximum time the oldest queued input waits for a group of K to fill. After it, the
        partial group is padded and sent.
    max_queue_size : int, >= 1
        Maximum number of inputs waiting to be sent to the workers. A request that would exceed
        it is rejected with HTTP 503.
    max_batch_size : int or None, a multiple of K
        Maximum inputs per coded call (several groups of K). None uses 8 groups.
    request_timeout : float, seconds, > 0
        Time from a request's arrival to its response, after which it fails with HTTP 504.
    max_request_bytes : int, >= 1
        Maximum request body, compressed or not, in bytes. Larger bodies get HTTP 413.
    shutdown_timeout : float, seconds, >= 0
        On shutdown, time to complete the requests already accepted before the rest fail.
    log_format : {"text", "json"}
        Format of the log lines written by the ``serve`` command.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str | None = None
    max_queue_delay: float = 0.005
    max_queue_size: int = 1024
    max_batch_size: int | None = None
    request_timeout: float = 30.0
    max_request_bytes: int = 16 * MIB
    shutdown_timeout: float = 30.0
    log_format: str = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty address such as '127.0.0.1', got {self.host!r}")
        _check_int("port", self.port, 0, 65535)
        if self.model_name is not None:
            if not isinstance(self.model_name, str) or not self.model_name or "/" in self.model_name:
                raise ValueError(
                    f"model_name must be a non-empty string without '/', got {self.model_name!r}"
                )
        _check_seconds("max_queue_delay", self.max_queue_delay, allow_zero=True)
        _check_int("max_queue_size", self.max_queue_size, 1)
        if self.max_batch_size is not None:
            _check_int("max_batch_size", self.max_batch_size, 1)
        _check_seconds("request_timeout", self.request_timeout)
        _check_int("max_request_bytes", self.max_request_bytes, 1)
        _check_seconds("shutdown_timeout", self.shutdown_timeout, allow_zero=True)
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format={self.log_format!r} is invalid; use one of {', '.join(LOG_FORMATS)}")

    def batch_size_for(self, k: int) -> int:
        """Return the maximum inputs per coded call for groups of `k` queries.

        Raises
        ------
        ValueError
            When `max_batch_size` is not a positive multiple of `k`.
        """
        if self.max_batch_size is None:
            return 8 * k
        if self.max_batch_size % k:
            raise ValueError(
                f"max_batch_size={self.max_batch_size} must be a multiple of K={k}, so that every "
                f"coded call carries whole groups; use {max(k, self.max_batch_size // k * k)}"
            )
        return self.max_batch_size


def load_config_file(path: str | Path, known_keys: Collection[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON (``.json``) file of server options.

    Parameters
    ----------
    path : str or Path
        The file. Its top level is a table of ``option = value`` pairs, or a ``[serve]`` table
        holding them.
    known_keys : collection of str
        Option names that may appear, with underscores.

    Returns
    -------
    dict of str to value
        The options, keys with underscores.

    Raises
    ------
    ValueError
        When the file cannot be parsed, has an unknown extension or names an unknown option.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            document = tomllib.loads(text)
        elif suffix == ".json":
            document = json.loads(text)
        else:
            raise ValueError(f"config file {str(path)!r} has extension {suffix or '(none)'!r}; use .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"config file {str(path)!r} is not valid {suffix[1:].upper()}: {error}") from None

    if isinstance(document, dict) and isinstance(document.get("serve"), dict):
        document = document["serve"]
    if not isinstance(document, dict):
        raise ValueError(f"config file {str(path)!r} must contain a table of option = value pairs")

    options = {}
    for key, value in document.items():
        name = str(key).replace("-", "_")
        if name not in known_keys:
            known = ", ".join(sorted(known_keys))
            raise ValueError(f"config file {str(path)!r} sets unknown option {key!r}; known options: {known}")
        options[name] = value
    return options


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        rule = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rule}, got {name}={value}")


def _check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {rule} seconds, got {name}={value!r}")
