"""The ASGI application: Open Inference Protocol v2 endpoints over a `RequestBatcher`.

Endpoints: ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET /v2/health/ready``,
``GET /v2/models/{name}`` (model metadata), ``GET /v2/models/{name}/ready``,
``POST /v2/models/{name}/infer`` (each also under ``/v2/models/{name}/versions/{version}``) and
``GET /metrics`` (Prometheus). Errors are JSON objects ``{"error": message}``, as the protocol
specifies, so that clients such as ``tritonclient`` show the message.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..session import CodedInferenceSession
from .batcher import BatchOutcome, QueueFullError, RequestBatcher, ServingError
from .config import ServeConfig
from .metrics import ServingMetrics
from .protocol import HEADER_LENGTH, ProtocolError, datatype_of, encode_infer_response, parse_infer_request

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

SERVER_NAME = "approxifer-onnx"
MODEL_VERSION = "1"

# Seconds a client should wait before retrying after a 503 for a full queue.
RETRY_AFTER_SECONDS = 1


def create_app(
    session: CodedInferenceSession,
    config: ServeConfig | None = None,
    *,
    close_session: bool = True,
) -> Starlette:
    """Build the ASGI app that serves `session`.

    The batcher starts with the app's lifespan and stops with it. On shutdown the app responds to the
    requests it accepted within ``config.shutdown_timeout`` seconds, fails the rest with HTTP 503,
    then closes the session when `close_session` is True.

    Parameters
    ----------
    session : CodedInferenceSession
        The coded session; the app's batcher is its only user while the app runs.
    config : ServeConfig, optional
        Defaults to ``ServeConfig()``.
    close_session : bool
        Close the session on shutdown.

    Returns
    -------
    starlette.applications.Starlette
        With attributes ``state.batcher``, ``state.metrics`` and ``state.model_name``.
    """
    config = config or ServeConfig()
    model_name = config.model_name or (session.model.path.stem if session.model.path else "model")
    metrics = ServingMetrics(model_name)
    batcher = RequestBatcher(
        session,
        max_queue_delay=config.max_queue_delay,
        max_queue_size=config.max_queue_size,
        max_batch_size=config.batch_size_for(session.k),
        on_batch=metrics.observe_batch,
        on_queue_depth=metrics.set_queue_depth,
    )
    service = _Service(session, config, model_name, batcher, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await batcher.start()
        logger.info(
            "server started: model=%s k=%d num_workers=%d backend=%s max_queue_delay=%gs "
            "max_queue_size=%d max_batch_size=%d",
            model_name, session.k, session.num_workers, type(session.backend).__name__,
            config.max_queue_delay, config.max_queue_size, batcher.max_batch_size,
        )
        try:
            yield
        finally:
            logger.info("server stopping: model=%s queued_inputs=%d", model_name, batcher.queue_depth)
            await batcher.close(config.shutdown_timeout)
            if close_session:
                session.close()
            logger.info("server stopped: model=%s", model_name)

    model_paths = ["/v2/models/{name}", "/v2/models/{name}/versions/{version}"]
    routes = [
        Route("/v2", service.server_metadata, methods=["GET"]),
        Route("/v2/health/live", service.live, methods=["GET"]),
        Route("/v2/health/ready", service.ready, methods=["GET"]),
        Route("/metrics", service.prometheus_metrics, methods=["GET"]),
    ]
    for prefix in model_paths:
        routes += [
            Route(prefix, service.model_metadata, methods=["GET"]),
            Route(prefix + "/ready", service.model_ready, methods=["GET"]),
            Route(prefix + "/infer", service.infer, methods=["POST"]),
        ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.model_name = model_name
    return app


class _Service:
    """The endpoint handlers of one app."""

    def __init__(self, session, config: ServeConfig, model_name: str, batcher: RequestBatcher, metrics: ServingMetrics):
        self.session = session
        self.config = config
        self.model_name = model_name
        self.batcher = batcher
        self.metrics = metrics
        self.input = session.get_inputs()[0]
        self.query_shape = tuple(session.model.query_shape)
        self.outputs = session.get_outputs()
        self.output_names = [info.name for info in self.outputs]

    # -- health and metadata -----------------------------------------------------------------

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.batcher.running
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        if (error := self._check_model(request)) is not None:
            return error
        metadata = {
            "name": self.model_name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [self._tensor_metadata(self.input.name, self.input.dtype, self.query_shape)],
            "outputs": [
                self._tensor_metadata(info.name, info.dtype, self.session.model.output_shapes[info.name])
                for info in self.outputs
            ],
            "parameters": {
                "group_size": self.session.k,
                "num_workers": self.session.num_workers,
                "stragglers": self.session.code.stragglers,
                "wait": self.session.wait,
            },
        }
        return JSONResponse(metadata)

    async def model_ready(self, request: Request) -> Response:
        if (error := self._check_model(request)) is not None:
            return error
        ready = self.batcher.running
        return JSONResponse({"name": self.model_name, "ready": ready}, status_code=200 if ready else 503)

    async def prometheus_metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- inference ---------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        started = time.monotonic()
        response = await self._infer(request)
        self.metrics.observe_request(response.status_code, time.monotonic() - started)
        return response

    async def _infer(self, request: Request) -> Response:
        if (error := self._check_model(request)) is not None:
            return error
        try:
            body = await self._read_body(request)
            parsed = parse_infer_request(
                body,
                request.headers.get(HEADER_LENGTH),
                input_name=self.input.name,
                query_shape=self.query_shape,
                output_names=self.output_names,
                max_inputs=self.config.max_queue_size,
            )
        except ProtocolError as error:
            return _error(str(error), error.status)
        except ClientDisconnect:
            logger.info("client disconnected while sending an inference request")
            return _error("client disconnected", 400)

        try:
            outcome = await self.batcher.submit(parsed.inputs, self.config.request_timeout)
        except QueueFullError as error:
            return _error(str(error), error.status, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        except ServingError as error:
            return _error(str(error), error.status)

        exact = int(outcome.exact.sum())
        self.metrics.observe_inputs(exact, len(outcome.exact) - exact)
        outputs = {
            info.name: outcome.outputs[position].astype(info.dtype)
            for position, info in enumerate(self.outputs)
            if info.name in parsed.output_names
        }
        body, headers = encode_infer_response(self.model_name, parsed, outputs, _coding_parameters(outcome, self.session))
        return Response(body, headers=headers)

    async def _read_body(self, request: Request) -> bytes:
        """Read the body, enforcing the size limit before and after decompression."""
        limit = self.config.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ProtocolError(_too_large(int(declared), limit), status=413)
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ProtocolError(_too_large(size, limit), status=413)
            chunks.append(chunk)
        body = b"".join(chunks)

        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding not in ("gzip", "deflate"):
            raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none", status=415)
        # wbits 47 accepts both zlib and gzip headers; max_length stops a decompression bomb.
        decompressor = zlib.decompressobj(47)
        try:
            plain = decompressor.decompress(body, limit + 1)
        except zlib.error as error:
            raise ProtocolError(f"the {encoding} request body cannot be decompressed: {error}") from None
        if len(plain) > limit or decompressor.unconsumed_tail:
            raise ProtocolError(f"the decompressed request body exceeds the limit of {limit} bytes", status=413)
        return plain

    # -- helpers -----------------------------------------------------------------------------

    def _check_model(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        if name != self.model_name:
            return _error(f"model {name!r} is not found; this server serves {self.model_name!r}", 404)
        version = request.path_params.get("version")
        if version is not None and version != MODEL_VERSION:
            return _error(f"version {version!r} of model {name!r} is not found; the only version is {MODEL_VERSION!r}", 404)
        return None

    @staticmethod
    def _tensor_metadata(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"name": name, "datatype": datatype_of(dtype), "shape": [-1, *shape]}


def _coding_parameters(outcome: BatchOutcome, session: CodedInferenceSession) -> dict[str, Any]:
    """Return the coding metadata of one completed request as protocol parameters."""
    return {
        "coding": "exact" if outcome.exact.all() else "approximate",
        "approximate_inputs": int((~outcome.exact).sum()),
        "workers_answered": _join(outcome.answered),
        "workers_late": _join(outcome.late),
        "workers_failed": _join(outcome.failed),
        "workers_suspected": _join(outcome.suspected),
        "group_size": session.k,
        "num_workers": session.num_workers,
        "batch_ids": ",".join(map(str, outcome.batch_ids)),
        "batch_offsets": ",".join(map(str, outcome.batch_offsets)),
    }


def _join(values: Any) -> str:
    return ",".join(str(value) for value in sorted(values))


def _too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes exceeds the limit of {limit} bytes; send fewer inputs per request"


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    if status >= 500:
        logger.warning("request failed with status %d: %s", status, message)
    return JSONResponse({"error": message}, status_code=status, headers=headers)
