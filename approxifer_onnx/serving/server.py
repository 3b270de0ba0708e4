"""Run the app with uvicorn: in the foreground, or in a background thread for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from types import TracebackType

import uvicorn

from ..session import CodedInferenceSession
from .app import create_app
from .config import ServeConfig

__all__ = ["JsonLogFormatter", "ServerThread", "serve"]

logger = logging.getLogger(__name__)

# Seconds that ServerThread waits for uvicorn to bind its socket.
STARTUP_TIMEOUT = 30.0

# Seconds that uvicorn waits, beyond the batcher's shutdown timeout, for the handlers to send the
# responses and errors of the last requests before it cancels them.
RESPONSE_GRACE = 5.0


def serve(session: CodedInferenceSession, config: ServeConfig | None = None) -> None:
    """Serve `session` until SIGINT or SIGTERM, then shut down gracefully and close the session.

    On a signal uvicorn stops accepting connections and waits up to ``config.shutdown_timeout``
    seconds for the requests in progress; the batcher completes or fails each one, then the session
    is closed.
    """
    config = config or ServeConfig()
    app = create_app(session, config)
    _GracefulServer(app, config).run()


class ServerThread:
    """A real uvicorn server on a TCP port, running in a background thread.

    Parameters
    ----------
    session : CodedInferenceSession
    config : ServeConfig, optional
        ``port=0`` (the default here) picks a free port; read it from `url` after `start`.
    close_session : bool
        Close the session when the server stops.

    Examples
    --------
    >>> with ServerThread(session) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/v2/health/ready")
    """

    def __init__(
        self,
        session: CodedInferenceSession,
        config: ServeConfig | None = None,
        *,
        close_session: bool = False,
    ):
        self.config = config or ServeConfig(port=0)
        self.app = create_app(session, self.config, close_session=close_session)
        self._server = _GracefulServer(self.app, self.config)
        # Signals can only be handled in the main thread, and the owner of this object stops it.
        self._server.install_signal_handlers = lambda: None
        self._thread = threading.Thread(target=self._server.run, name="approxifer-server", daemon=True)

    @property
    def url(self) -> str:
        """Base URL, such as ``http://127.0.0.1:41234``."""
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def address(self) -> str:
        """``host:port``, the form that ``tritonclient`` takes."""
        return self.url.removeprefix("http://")

    def start(self) -> ServerThread:
        """Start the server and wait until it listens.

        Raises
        ------
        RuntimeError
            When the server did not start within `STARTUP_TIMEOUT` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Shut down gracefully, as on SIGTERM, and wait for the thread.

        Parameters
        ----------
        timeout : float or None, seconds
            Maximum wait for the thread; defaults to the shutdown timeout plus 10 s.
        """
        self._server.should_exit = True
        wait = self.config.shutdown_timeout + 10.0 if timeout is None else timeout
        self._thread.join(wait)
        if self._thread.is_alive():
            logger.warning("the server thread did not stop within %g s", wait)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class JsonLogFormatter(logging.Formatter):
    """Format each log record as one JSON object: time, level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _GracefulServer(uvicorn.Server):
    """A uvicorn server that closes the batcher as soon as shutdown begins.

    uvicorn first waits for the open requests and only then runs the app's lifespan shutdown. The
    batcher therefore has to stop waiting for full groups, and fail what it cannot complete, before
    that wait, so that every accepted request gets a response.
    """

    def __init__(self, app, config: ServeConfig):
        super().__init__(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                lifespan="on",
                log_config=None,  # keep the logging the caller configured
                access_log=False,
                timeout_graceful_shutdown=config.shutdown_timeout + RESPONSE_GRACE,
            )
        )
        self._batcher = app.state.batcher
        self._shutdown_timeout = config.shutdown_timeout

    async def shutdown(self, sockets=None) -> None:
        closing = asyncio.get_running_loop().create_task(self._batcher.close(self._shutdown_timeout))
        await super().shutdown(sockets)
        await closing
