"""The `approxifer-onnx` command line: each command parses options and calls the library."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from approxifer_onnx.coding import (
    AUTO,
    DEFAULT_LOCATOR,
    DEFAULT_NODE_FAMILY,
    LOCATORS,
    NODE_FAMILIES,
)
from approxifer_onnx.exceptions import ApproxiferError
from approxifer_onnx.session import DECODE_SPACES, WAIT_POLICIES

from .privacy import privacy_options, privacy_summary, session_privacy_kwargs

logger = logging.getLogger("approxifer_onnx.cli")

#: Errors a user can cause with a bad option or file: printed as one line, exit status 1.
USER_ERRORS = (ApproxiferError, ValueError, TypeError, FileNotFoundError, PermissionError)


def report_user_errors(command):
    """Turn the errors a user can cause into one-line click errors instead of tracebacks."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            logger.debug("command failed", exc_info=True)
            raise click.ClickException(str(error)) from error

    return wrapper


def configure_logging(verbose: int, quiet: int) -> None:
    """Set the log level from -v/-q counts: WARNING by default, INFO with -v, DEBUG with -vv."""
    level = max(logging.DEBUG, min(logging.CRITICAL, logging.WARNING - 10 * verbose + 10 * quiet))
    logging.getLogger("approxifer_onnx").setLevel(level)
    logging.getLogger("model_zoo").setLevel(level)
    # basicConfig does nothing when the root logger already has handlers (an embedding app).
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="approxifer-onnx")
@click.option("-v", "--verbose", count=True, help="Log more: -v for INFO, -vv for DEBUG.")
@click.option("-q", "--quiet", count=True, help="Log less: -q for errors only.")
def main(verbose: int, quiet: int) -> None:
    """Coded, straggler-resilient inference for any ONNX classifier (ApproxIFER)."""
    configure_logging(verbose, quiet)


def code_options(command):
    """Options that define the code and the wait policy, shared by the commands that run one."""
    options = [
        click.option("-k", "--k", "k", type=click.IntRange(min=1), default=8, show_default=True,
                     help="Queries per group."),
        click.option("-s", "--stragglers", type=click.IntRange(min=0), default=1,
                     show_default=True, help="Stragglers S tolerated; N defaults to K + S."),
        click.option("-n", "--num-workers", type=click.IntRange(min=1), default=None,
                     help="Workers N (at least K + S). Extra workers decode more accurately "
                          "with --wait deadline or -e; with first-k alone they only tolerate "
                          "more stragglers."),
        click.option("--nodes", type=click.Choice([AUTO, *NODE_FAMILIES]),
                     default=DEFAULT_NODE_FAMILY, show_default=True,
                     help="Worker node family. auto: paired (K workers get the raw queries, each "
                          "parity worker mostly one of them) when N - K <= 2K, else "
                          "second-kind-open."),
        click.option("--wait", type=click.Choice(list(WAIT_POLICIES)), default="first-k",
                     show_default=True,
                     help="first-k: decode from the first K results (N - S with --byzantine); "
                          "deadline: decode from all results that arrive before --deadline."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
                     show_default=True,
                     help="Seconds to wait for the results decoding needs (K, or N - S with "
                          "-e)."),
        click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="With --wait deadline: seconds after which to stop waiting for more "
                          "results than decoding needs [default: the timeout]."),
        click.option("--decode", "decode", type=click.Choice(list(DECODE_SPACES)),
                     default="logits", show_default=True,
                     help="Interpolate raw outputs or their softmax."),
        click.option("-e", "--byzantine", type=click.IntRange(min=0), default=0,
                     show_default=True,
                     help="Wrong results E to locate and drop in every group before decoding."),
        click.option("--locator", type=click.Choice(list(LOCATORS)), default=DEFAULT_LOCATOR,
                     show_default=True,
                     help="Error locator for --byzantine; its minimum sets the default N: "
                          "max(K+E, 2E+1)+S for median, K+2E+S for subset-search and "
                          "reed-solomon, K+2E+S+1 for berrut-rational, K+E+ceil(E/C)+S for "
                          "joint, 2K+2E+S-1 for welch (the paper's). More workers locate and "
                          "decode better: docs/benchmarks-byzantine.md gives N per K and E."),
        click.option("--locator-tolerance", type=click.FloatRange(min=0), default=None,
                     help="Locator statistic under which results count as honest: for median "
                          "a result's distance to the per-class median over the group's "
                          "typical distance (default 6), for the code-based locators a "
                          "relative fit residual (default about 2e-10, for exact data only). "
                          "wrap --calibrate-locator measures it on held-out inputs."),
        click.option("--provider", "providers", multiple=True,
                     help="onnxruntime execution provider, in order of preference; repeatable "
                          "(e.g. --provider CUDAExecutionProvider --provider "
                          "CPUExecutionProvider)."),
        click.option("--strict-providers", is_flag=True,
                     help="Fail instead of warning when a requested provider is not active."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def data_options(command):
    """Options that locate and preprocess the input data."""
    options = [
        click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path),
                     default=None,
                     help="IDX folder or file, .npy/.npz array, or image folder [default: "
                          "Debian's Fashion-MNIST test set when installed]."),
        click.option("--split", type=click.Choice(["test", "train"]), default="test",
                     show_default=True, help="Split of an IDX folder or .npz archive."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Use only the first LIMIT inputs."),
        click.option("--scale/--no-scale", default=True, show_default=True,
                     help="Scale 8-bit images to [0, 1]."),
        click.option("--size", type=(click.IntRange(min=1), click.IntRange(min=1)),
                     default=None, metavar="HEIGHT WIDTH",
                     help="Resize images to HEIGHT x WIDTH pixels (bilinear)."),
        click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                     help="Convert images to grayscale (1) or RGB (3) to match the model."),
        click.option("--mean", type=float, multiple=True,
                     help="Per-channel mean subtracted after scaling; repeat once per channel."),
        click.option("--std", type=float, multiple=True,
                     help="Per-channel standard deviation to divide by; repeat per channel."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_data(data_path, split, limit, scale, mean, std, size=None, channels=None):
    """Load and preprocess the data set named by the data options."""
    from approxifer_onnx.data import load_dataset

    return load_dataset(
        data_path,
        split=split,
        scale=scale,
        mean=list(mean) or None,
        std=list(std) or None,
        size=size,
        channels=None if channels is None else int(channels),
        limit=limit,
    )


def open_session(model_path, *, k, stragglers, num_workers, nodes, wait, timeout, deadline,
                 decode, byzantine, locator, locator_tolerance, providers, strict_providers,
                 faults=None, attack=None, seed=None, backend=None, **privacy):
    """Create a CodedInferenceSession from the code options and `session_privacy_kwargs`."""
    from approxifer_onnx.session import CodedInferenceSession

    return CodedInferenceSession(
        model_path,
        k=k,
        stragglers=stragglers,
        num_workers=num_workers,
        nodes=nodes,
        wait=wait,
        timeout=timeout,
        deadline=deadline,
        decode=decode,
        byzantine=byzantine,
        locator=locator,
        locator_tolerance=locator_tolerance,
        providers=list(providers) or None,
        strict_providers=strict_providers,
        faults=faults,
        attack=attack,
        backend=backend,
        rng=seed,
        **privacy,
    )


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_options
@code_options
@click.option("--simulate-stragglers", "straggler_plan", default=None, metavar="PLAN",
              help="Inject faults, e.g. 'count=1;delay=hang' (one random straggler per call), "
                   "'p=0.05;delay=exp:0.2', 'workers=2,5;delay=0.5', 'fail=3'.")
@click.option("--simulate-byzantine", "attack_plan", default=None, metavar="PLAN",
              help="Make workers return wrong results: KIND[:PARAMETER]@WORKERS, e.g. "
                   "'gaussian:10@random:1' or 'sign-flip@0,5'; kinds: gaussian, sign-flip, "
                   "constant, permuted, argmax-flip.")
@click.option("--calibrate-locator", "calibration_count", type=click.IntRange(min=1),
              default=None, metavar="COUNT",
              help="With -e: hold out the last COUNT inputs of --data, run them without faults "
                   "or wrong results, and set the locator tolerance to the 0.99 quantile of "
                   "their honest statistic; the other inputs are served. 800 or more at K = 8 "
                   "give a stable value.")
@privacy_options
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the injected faults and wrong results.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Queries per coded call.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write per-input predictions here (.jsonl or .csv).")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the summary (accuracy, latency, stragglers) here as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
@report_user_errors
def wrap(model, data_path, split, limit, scale, size, channels, mean, std, straggler_plan,
         attack_plan, calibration_count, dp_epsilon, dp_placement, dp_bounds, dp_budget,
         dp_seed, seed, batch_size, output, summary_json, progress, **code):
    """Classify a data set with MODEL through coded, straggler-resilient workers.

    Prints centralized and coded accuracy when the data has labels, and latency and straggler
    counts always.
    """
    from approxifer_onnx.attacks import ByzantinePlan
    from approxifer_onnx.faults import FaultPlan
    from approxifer_onnx.wrap import OUTPUT_FORMATS, wrap_dataset, write_predictions

    if output is not None and output.suffix.lower() not in OUTPUT_FORMATS:
        raise click.BadParameter(
            f"{str(output)!r} has extension {output.suffix or '(none)'!r}; "
            f"use one of {', '.join(OUTPUT_FORMATS)}",
            param_hint="--output",
        )
    faults = FaultPlan.parse(straggler_plan) if straggler_plan else None
    attack = ByzantinePlan.parse(attack_plan) if attack_plan else None
    privacy = session_privacy_kwargs(dp_epsilon, dp_placement, dp_bounds, dp_budget, dp_seed)
    dataset = load_data(data_path, split, limit, scale, mean, std, size, channels)
    inputs, labels = dataset.inputs, dataset.labels
    if calibration_count is not None:
        if not code["byzantine"]:
            raise click.BadParameter("needs -e/--byzantine E > 0; without it nothing is located",
                                     param_hint="--calibrate-locator")
        if calibration_count >= len(inputs):
            raise click.BadParameter(
                f"{calibration_count} held-out inputs leave none of the {len(inputs)} to serve; "
                "use fewer", param_hint="--calibrate-locator")
        served = len(inputs) - calibration_count
        held_out = inputs[served:]
        inputs = inputs[:served]
        labels = None if labels is None else labels[:served]
    with open_session(model, faults=faults, attack=attack, seed=seed, **privacy, **code) as session:
        if calibration_count is not None:
            session.calibrate_locator(held_out, rng=seed)
        result = wrap_dataset(session, inputs, labels, batch_size=batch_size, progress=progress)
        summary = result.summary(session)
        summary["privacy"] = privacy_summary(
            privacy, None if session.privacy is None else session.privacy.accountant
        )
    summary["data"] = dataset.source
    summary["seed"] = seed
    summary["simulate_stragglers"] = straggler_plan
    summary["simulate_byzantine"] = attack_plan
    summary["batch_size"] = batch_size

    if output is not None:
        write_predictions(output, result)
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(format_summary(summary))


def _format_tolerance(summary: dict) -> str:
    tolerance = summary.get("locator_tolerance")
    return "default" if tolerance is None else f"{tolerance:.3g}"


def format_summary(summary: dict) -> str:
    """Format a wrap summary for the terminal."""
    lines = [
        f"model        {summary['model']}",
        f"data         {summary['data']} ({summary['num_inputs']} inputs)",
        f"code         K={summary['k']}, N={summary['num_workers']}, S={summary['stragglers']}, "
        f"nodes={summary['nodes']}, wait={summary['wait']}",
    ]
    if summary["accuracy_coded"] is not None:
        lines += [
            f"accuracy     centralized {summary['accuracy_centralized']:.4f}   "
            f"coded {summary['accuracy_coded']:.4f}",
        ]
    if summary["agreement"] is not None:
        lines.append(f"agreement    {summary['agreement']:.4f} of coded predictions match the "
                     "centralized ones")
    if summary["latency_p50_ms"] is not None:
        lines.append(
            f"latency      p50 {summary['latency_p50_ms']:.1f} ms   p99 "
            f"{summary['latency_p99_ms']:.1f} ms   max {summary['latency_max_ms']:.1f} ms "
            f"per call of up to {summary['batch_size']} inputs"
        )
    lines.append(
        f"stragglers   {summary['late_workers_total']} worker results not waited for and "
        f"{summary['failed_workers_total']} failed, in {summary['calls_with_stragglers']} of "
        f"{summary['calls']} calls"
    )
    if summary.get("byzantine"):
        lines.append(
            f"byzantine    {summary['suspected_results_total']} result(s) dropped as wrong in "
            f"{summary['groups']} groups by the {summary['locator']} locator "
            f"(E={summary['byzantine']}, tolerance {_format_tolerance(summary)})"
        )
    privacy = summary.get("privacy")
    if privacy:
        lines.append(
            f"privacy      Laplace noise on {privacy['placement']}, epsilon "
            f"{privacy['epsilon']:g} per released vector, {privacy['epsilon_spent']:g} spent"
        )
    return "\n".join(lines)


def _register_optional_commands() -> None:
    """Attach the commands that live in their own modules, when those modules exist."""
    import importlib

    for module_name in ("zoo", "evaluate", "serve", "bench"):
        try:
            module = importlib.import_module(f"{__package__}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__package__}.{module_name}":
                raise
            continue
        module.register(main)


_register_optional_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
