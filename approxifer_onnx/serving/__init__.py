"""An HTTP prediction service for coded inference (Open Inference Protocol v2).

Needs the ``serve`` extra (starlette, uvicorn, prometheus-client). `create_app` builds the ASGI
app around a `CodedInferenceSession`; `serve` runs it with uvicorn; `ServerThread` runs it in a
background thread. The app groups the inputs of concurrent requests into coded calls of K
(`RequestBatcher`).
"""

from .app import create_app
from .batcher import (
    BatchOutcome,
    QueueFullError,
    RequestBatcher,
    RequestTimeoutError,
    ServingError,
    ShuttingDownError,
    WorkerPoolError,
)
from .config import ServeConfig, load_config_file
from .server import JsonLogFormatter, ServerThread, serve

__all__ = [
    "BatchOutcome",
    "JsonLogFormatter",
    "QueueFullError",
    "RequestBatcher",
    "RequestTimeoutError",
    "ServeConfig",
    "ServerThread",
    "ServingError",
    "ShuttingDownError",
    "WorkerPoolError",
    "create_app",
    "load_config_file",
    "serve",
]
