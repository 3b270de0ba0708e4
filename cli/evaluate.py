"""The `approxifer-onnx evaluate` command: the ApproxIFER accuracy protocol over a grid."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import click

from approxifer_onnx.coding import DEFAULT_LOCATOR, DEFAULT_NODE_FAMILY, LOCATORS, NODE_FAMILIES
from approxifer_onnx.evaluation import PAPER_GRID
from approxifer_onnx.report import PUBLISHED_RESNET18

from .main import data_options, load_data, report_user_errors
from .privacy import privacy_options, privacy_summary, session_privacy_kwargs

__all__ = ["register"]

CONFIDENCE_METHOD = (
    "Wilson score interval for base accuracy; percentile bootstrap over groups of K "
    "(2000 resamples, seed 0) for coded accuracy"
)


def _expand_nodes(nodes: tuple[str, ...]) -> list[str]:
    """Replace "all" by every named node family, keeping the order and dropping repeats."""
    expanded = []
    for item in nodes or (DEFAULT_NODE_FAMILY,):
        expanded += list(NODE_FAMILIES) if item == "all" else [item]
    return list(dict.fromkeys(expanded))


def _command_line() -> str:
    return " ".join(["approxifer-onnx", *sys.argv[1:]])


@click.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_options
@click.option("--grid", default=PAPER_GRID, show_default=True, metavar="K:S[:N],...",
              help="Codes to evaluate: comma-separated K:S items (N = K + S) or K:S:N items.")
@click.option("--nodes", multiple=True, metavar="NODES",
              help="Worker nodes, repeatable: 'auto' (paired when N - K <= 2K, else "
                   "second-kind-open), a family (" + ", ".join(NODE_FAMILIES) + "), 'all' for "
                   "every family, 'shift:S' for cos((i + S) pi / N), or 'fit' to fit S on the "
                   f"calibration set [default: {DEFAULT_NODE_FAMILY}].")
@click.option("--wait", "waits", multiple=True, metavar="POLICY",
              help="Wait policy, repeatable: 'first-k' (decode from K random results, so "
                   "exactly S stragglers per group when N = K + S: the worst case; N - S "
                   "results with --byzantine), "
                   "'all-but-s' (exactly S random stragglers, decode from the other N - S "
                   "results) or 'deadline:P' (each worker late with probability P, decode from "
                   "every punctual result) [default: first-k].")
@click.option("--decode", "decodes", multiple=True, type=click.Choice(["logits", "probabilities"]),
              help="Space to interpolate in, repeatable [default: logits].")
@click.option("--decoder", "decoders", multiple=True, metavar="DECODER",
              help="Decoder, repeatable: 'berrut' or 'floater-hormann:D' with order D "
                   "[default: berrut].")
@click.option("--passes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Passes over the data, each with new random groups and stragglers.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the groups and straggler draws.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Level of the confidence intervals.")
@click.option("--calibration-data", type=click.Path(exists=True, path_type=Path), default=None,
              help="Unlabeled inputs for --nodes fit [default: the --data path].")
@click.option("--calibration-split", type=click.Choice(["test", "train"]), default="train",
              show_default=True, help="Split of the calibration data.")
@click.option("--calibration-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Calibration inputs used for --nodes fit.")
@click.option("--published", type=click.Choice(list(PUBLISHED_RESNET18)), default=None,
              help="Add ApproxIFER's published ResNet-18 accuracy on this data set to the "
                   "table and the chart.")
@click.option("--output", "output_prefix", type=click.Path(dir_okay=False, path_type=Path),
              default=None,
              help="Write OUTPUT.md, .csv, .json and .png [default: MODEL's name + "
                   "'_evaluation' in the current folder].")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Queries per model run.")
@click.option("--provider", "providers", multiple=True,
              help="onnxruntime execution provider, in order of preference; repeatable.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar over the grid.")
@click.option("-e", "--byzantine", type=click.IntRange(min=0), default=0, show_default=True,
              help="Wrong results E to locate and drop in every group; a grid item without N "
                   "gets the locator's minimum N.")
@click.option("--locator", type=click.Choice(list(LOCATORS)), default=DEFAULT_LOCATOR,
              show_default=True, help="Error locator for --byzantine.")
@click.option("--locator-tolerance", type=click.FloatRange(min=0), default=None,
              help="Fit statistic under which results count as honest (see wrap --help).")
@click.option("--simulate-byzantine", "attack_plan", default=None, metavar="PLAN",
              help="Wrong results to inject, KIND[:PARAMETER]@WORKERS, e.g. "
                   "'gaussian:10@random:1'.")
@privacy_options
@report_user_errors
def evaluate(model, data_path, split, limit, scale, size, channels, mean, std, grid, nodes, waits, decodes,
             decoders, passes, seed, confidence, calibration_data, calibration_split,
             calibration_size, published, output_prefix, batch_size, providers, progress,
             byzantine, locator, locator_tolerance, attack_plan,
             dp_epsilon, dp_placement, dp_bounds, dp_budget, dp_seed):
    """Measure base and coded accuracy of MODEL with simulated stragglers over a grid of codes.

    Each pass splits the labelled data into random groups of K, encodes every group into N
    coded queries, runs the model on all of them and decodes each group from the workers that
    are not stragglers. The model runs once per code, node family and pass; wait policies,
    decode spaces and decoders reuse those outputs with the same straggler draws.
    """
    from approxifer_onnx.evaluation import evaluate_grid, parse_grid
    from approxifer_onnx.model import OnnxModel
    from approxifer_onnx.privacy import PrivacyPolicy
    from approxifer_onnx.report import published_accuracy, write_report

    from approxifer_onnx.attacks import ByzantinePlan

    settings = parse_grid(grid)
    attack = ByzantinePlan.parse(attack_plan) if attack_plan else None
    privacy_kwargs = session_privacy_kwargs(dp_epsilon, dp_placement, dp_bounds, dp_budget, dp_seed)
    policy = None
    if privacy_kwargs:
        policy = PrivacyPolicy(privacy_kwargs["privacy"], privacy_kwargs["privacy_placement"],
                               privacy_kwargs["privacy_budget"])
    node_specifications = _expand_nodes(nodes)
    dataset = load_data(data_path, split, limit, scale, mean, std, size, channels)
    if dataset.labels is None:
        raise click.ClickException(
            f"{dataset.source} has no labels; evaluate needs a labelled data set"
        )
    calibration = None
    if "fit" in node_specifications:
        calibration = load_data(calibration_data or data_path, calibration_split,
                                calibration_size, scale, mean, std, size, channels).inputs

    started = time.perf_counter()
    onnx_model = OnnxModel(model, providers=list(providers) or None)
    results = evaluate_grid(
        onnx_model, dataset.inputs, dataset.labels, settings,
        nodes=node_specifications, waits=list(waits) or ["first-k"],
        decodes=list(decodes) or ["logits"], decoders=list(decoders) or ["berrut"],
        passes=passes, rng=seed, confidence=confidence, calibration_inputs=calibration,
        batch_size=batch_size, progress=progress, privacy=policy, byzantine=byzantine,
        locator=locator, locator_tolerance=locator_tolerance, attack=attack,
    )

    rows = []
    for result in results:
        row = result.to_dict()
        row["published_accuracy"] = published_accuracy(
            published, result.k, result.stragglers, result.num_workers, result.wait
        )
        rows.append(row)
    report = {
        "title": f"{model.parent.name}/{model.name}, {len(dataset)} inputs x {passes} pass(es), "
                 f"seed {seed}",
        "model": str(model),
        "data": dataset.source,
        "num_inputs": len(dataset),
        "passes": passes,
        "seed": seed,
        "confidence": confidence,
        "intervals": CONFIDENCE_METHOD,
        "calibration": (None if calibration is None else
                        f"{calibration_size} inputs of {calibration_data or data_path or 'default data'} "
                        f"({calibration_split} split)"),
        "published": published,
        "privacy": privacy_summary(privacy_kwargs, None if policy is None else policy.accountant),
        "command": _command_line(),
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                    f"providers {', '.join(onnx_model.active_providers)}",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    prefix = output_prefix or Path(f"{model.stem}_evaluation")
    if prefix.suffix.lower() in (".md", ".csv", ".json", ".png"):
        prefix = prefix.with_suffix("")  # --output report.md names the prefix, not one file
    paths = write_report(prefix, report)

    from approxifer_onnx.report import markdown_table

    click.echo(markdown_table(rows), nl=False)
    click.echo("wrote " + ", ".join(str(path) for path in paths))


def register(main: click.Group) -> None:
    """Add the `evaluate` command to the `approxifer-onnx` group."""
    main.add_command(evaluate)
