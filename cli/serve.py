"""The ``serve`` command: an HTTP prediction service (Open Inference Protocol v2) for one model.

Every option can also come from an environment variable, ``APPROXIFER_ONNX_SERVE_`` followed by
the option name in capitals with underscores (``APPROXIFER_ONNX_SERVE_PORT=9000``), or from a
TOML or JSON file given with ``--config``. A flag beats the environment, which beats the file.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from .main import code_options, open_session, report_user_errors

ENVIRONMENT_PREFIX = "APPROXIFER_ONNX_SERVE"
BACKENDS = ("local", "ray")


def register(main: click.Group) -> None:
    """Add the ``serve`` command to the ``approxifer-onnx`` group."""
    main.add_command(serve)


def _read_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    # Eager, so that the file's values become the defaults of the options parsed after it.
    if path is None:
        return
    from approxifer_onnx.serving import load_config_file

    known = {option.name for option in ctx.command.params if option.name != "config"}
    try:
        options = load_config_file(path, known)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **options}


@click.command(context_settings={"auto_envvar_prefix": ENVIRONMENT_PREFIX, "show_default": True})
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              is_eager=True, expose_value=False, callback=_read_config,
              help="TOML or JSON file of option values, keys as option names (max-queue-delay = 0.01).")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                envvar=f"{ENVIRONMENT_PREFIX}_MODEL")
@code_options
@click.option("--host", default="127.0.0.1",
              help="Address to listen on; 0.0.0.0 accepts connections from other machines.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, help="TCP port; 0 picks a free one.")
@click.option("--model-name", default=None,
              help="Model name in the URLs, /v2/models/NAME [default: the file name without .onnx].")
@click.option("--max-queue-delay", type=click.FloatRange(min=0), default=0.005,
              help="Seconds the oldest queued input waits for a group of K before a padded partial "
                   "group is sent.")
@click.option("--max-queue-size", type=click.IntRange(min=1), default=1024,
              help="Inputs that may wait for the workers; beyond it requests get HTTP 503.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=None,
              help="Inputs per coded call, a multiple of K [default: 8 K].")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              help="Seconds from a request's arrival to its response before it fails with HTTP 504.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=16 * 1024 * 1024,
              help="Largest request body in bytes, before and after decompression; larger ones get "
                   "HTTP 413.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0,
              help="Seconds to complete accepted requests on shutdown before failing the rest.")
@click.option("--backend", type=click.Choice(BACKENDS), default="local",
              help="local: worker threads in this process; ray: Ray actors (the ray extra).")
@click.option("--ray-address", default=None,
              help="With --backend ray: address of a Ray cluster to join [default: start a local "
                   "Ray on 127.0.0.1].")
@click.option("--ray-num-cpus", type=click.FloatRange(min=0), default=0.0,
              help="With --backend ray: CPUs each worker actor reserves.")
@click.option("--simulate-stragglers", "straggler_plan", default=None, metavar="PLAN",
              help="Inject faults into the workers, e.g. 'count=1;delay=exp:0.05'.")
@click.option("--seed", type=int, default=0, help="Seed of the injected faults.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="text, or one JSON object per log line.")
@report_user_errors
def serve(model, host, port, model_name, max_queue_delay, max_queue_size, max_batch_size,
          request_timeout, max_request_bytes, shutdown_timeout, backend, ray_address, ray_num_cpus,
          straggler_plan, seed, log_format, **code):
    """Serve MODEL over HTTP with the Open Inference Protocol v2 (KServe, Triton clients).

    Requests are grouped by K into coded calls; each response carries the coding metadata in
    its parameters. Listens on 127.0.0.1:8000 by default. Stop with Ctrl-C or SIGTERM: the
    server responds to the accepted requests, then exits.

    Each option can also be set by the variable APPROXIFER_ONNX_SERVE_<OPTION> (for example
    APPROXIFER_ONNX_SERVE_MAX_QUEUE_DELAY=0.01) or in the --config file.
    """
    from approxifer_onnx.faults import FaultPlan

    try:
        from approxifer_onnx.serving import JsonLogFormatter, ServeConfig
        from approxifer_onnx.serving import serve as run_server
    except ModuleNotFoundError as error:
        raise click.ClickException(
            f"serve needs the serve extra, but {error.name} is not installed; install it with "
            "pip install 'approxifer-onnx[serve]'"
        ) from error

    config = ServeConfig(
        host=host,
        port=port,
        model_name=model_name,
        max_queue_delay=max_queue_delay,
        max_queue_size=max_queue_size,
        max_batch_size=max_batch_size,
        request_timeout=request_timeout,
        max_request_bytes=max_request_bytes,
        shutdown_timeout=shutdown_timeout,
        log_format=log_format,
    )
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLogFormatter())
    # The server's start and stop logs are INFO; show them unless -q lowered the level. Worker
    # failures that were not injected are warnings of the backends, shown at the default level.
    if logging.getLogger().getEffectiveLevel() == logging.WARNING:
        logging.getLogger("approxifer_onnx.serving").setLevel(logging.INFO)

    faults = FaultPlan.parse(straggler_plan) if straggler_plan else None
    if backend == "ray":
        session = _open_ray_session(model, ray_address, ray_num_cpus, faults, seed, code)
    else:
        session = open_session(model, faults=faults, seed=seed, **code)
    config.batch_size_for(session.k)  # reject a bad --max-batch-size before the server starts
    click.echo(f"serving {model} on http://{host}:{port}/v2/models/{config.model_name or model.stem}", err=True)
    run_server(session, config)


def _open_ray_session(model, ray_address, ray_num_cpus, faults, seed, code):
    """Create a CodedInferenceSession whose workers are Ray actors."""
    try:
        from approxifer_onnx.backends.ray import RayBackend, import_ray

        import_ray()
    except ImportError as error:
        raise click.UsageError(str(error)) from error

    backend = functools.partial(RayBackend, address=ray_address, num_cpus=ray_num_cpus)
    return open_session(model, faults=faults, seed=seed, backend=backend, **code)
