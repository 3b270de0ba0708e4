"""Measure decoding choices that could beat ApproxIFER's published accuracy without retraining.

Runs `approxifer-onnx evaluate` on one model in three parts, each a separate report under
--output-dir, then writes a summary table per part:

- ``nodes``: every worker node family, the shift fitted on unlabeled calibration inputs and
  the systematic placement, under ApproxIFER's worst case (N = K + S, exactly S random
  stragglers per group);
- ``decoders``: Berrut against Floater-Hormann of orders 1 to 3, logits against
  probabilities, on the paper's five (K, S) settings;
- ``waiting``: more workers than K + S, decoding from K results ("first-k"), from all but S
  ("all-but-s") or from every punctual result ("deadline:P").

Decode spaces and decoders reuse the model's outputs on the coded queries, so they are added to
every part at no model cost.

    python benchmarks/decoding_study.py --model PATH --name resnet18 [--limit 5000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from approxifer_onnx.coding import NODE_FAMILIES

DECODE_OPTIONS = ["--decode", "logits", "--decode", "probabilities"]
DECODER_OPTIONS = ["--decoder", "berrut", "--decoder", "floater-hormann:1",
                   "--decoder", "floater-hormann:2", "--decoder", "floater-hormann:3"]

#: Each part: (name, evaluate options). The best named node family of the "nodes" part is
#: used by the later parts through the NODES placeholder; systematic nodes run beside it.
PARTS = [
    ("nodes", ["--grid", "8:1,12:1,8:3", "--nodes", "all", "--nodes", "fit",
               "--nodes", "systematic",
               *DECODE_OPTIONS, "--decoder", "berrut", "--decoder", "floater-hormann:1"]),
    ("decoders", ["--grid", "8:1,10:1,12:1,8:2,8:3", "--nodes", "NODES",
                  "--nodes", "systematic",
                  *DECODE_OPTIONS, *DECODER_OPTIONS]),
    ("waiting", ["--grid", "8:1:10,8:1:12,8:1:15,8:3:15", "--nodes", "NODES",
                 "--nodes", "systematic",
                 "--wait", "first-k", "--wait", "all-but-s", "--wait", "deadline:0.05",
                 *DECODE_OPTIONS, "--decoder", "berrut", "--decoder", "floater-hormann:1"]),
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX classifier.")
    parser.add_argument("--name", required=True, help="Short model name for the file names.")
    parser.add_argument("--data", type=Path, default=None,
                        help="Labelled test data [default: Debian's Fashion-MNIST].")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first inputs.")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", default=[name for name, _ in PARTS],
                        choices=[name for name, _ in PARTS], help="Parts to run.")
    parser.add_argument("--nodes", default=None,
                        help="Node family for the later parts [default: the best of the nodes "
                             "part, or second-kind-open when it is not run].")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def run_part(args, part: str, options: list[str], nodes: str) -> Path:
    """Run one part through the evaluate command and return its output prefix."""
    prefix = args.output_dir / f"decoding_{args.name}_{part}"
    # The same as the approxifer-onnx console script, with this interpreter.
    command = [sys.executable, "-c", "from approxifer_onnx_cli.main import main; main()",
               "evaluate", str(args.model),
               "--passes", str(args.passes), "--seed", str(args.seed), "--output", str(prefix),
               "--no-progress"]
    if args.data is not None:
        command += ["--data", str(args.data)]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    command += [nodes if option == "NODES" else option for option in options]
    print("+ approxifer-onnx", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return prefix


def best_node_family(rows: list[dict]) -> str:
    """Return the all-coded family of `NODE_FAMILIES` with the highest mean coded accuracy."""
    totals = defaultdict(list)
    for row in rows:
        if row["nodes"] in NODE_FAMILIES and row["nodes"] != "systematic":
            totals[row["nodes"]].append(row["accuracy_coded"])
    return max(totals, key=lambda family: sum(totals[family]) / len(totals[family]))


def summary_table(rows: list[dict]) -> str:
    """Tabulate coded accuracy per setting (columns) and variant (rows), best per column bold."""
    def setting(row):
        text = f"K={row['k']} S={row['stragglers']} N={row['num_workers']}"
        if row["wait"] == "deadline":
            return f"{text} p={row['straggler_probability']:g}"
        return text if row["wait"] == "first-k" else f"{text} {row['wait']}"

    def variant(row):
        nodes = "fitted" if row["nodes"].startswith("fitted") else row["nodes"]
        return f"{nodes}, {row['decode']}, {row['decoder']}"

    settings = list(dict.fromkeys(setting(row) for row in rows))
    variants = list(dict.fromkeys(variant(row) for row in rows))
    table = {(variant(row), setting(row)): row["accuracy_coded"] for row in rows}
    best = {column: max(table.get((name, column), 0.0) for name in variants)
            for column in settings}
    lines = ["| variant | " + " | ".join(settings) + " | mean |",
             "|---|" + "---|" * (len(settings) + 1)]
    for name in variants:
        values = [table.get((name, column)) for column in settings]
        cells = []
        for column, value in zip(settings, values):
            text = "" if value is None else f"{value:.4f}"
            cells.append(f"**{text}**" if value is not None and value == best[column] else text)
        present = [value for value in values if value is not None]
        cells.append(f"{sum(present) / len(present):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    nodes = args.nodes or "second-kind-open"
    summary = [f"# Decoding study: {args.name}", ""]
    for part, options in PARTS:
        prefix = args.output_dir / f"decoding_{args.name}_{part}"
        if part in args.parts:
            run_part(args, part, options, nodes)
        elif not prefix.with_suffix(".json").exists():
            continue
        # A part not run this time is summarised from its earlier report.
        report = json.loads(prefix.with_suffix(".json").read_text())
        rows = report["rows"]
        if part == "nodes" and args.nodes is None:
            nodes = best_node_family(rows)
        base = rows[0]
        summary += [
            f"## {part}", "",
            f"Base accuracy {base['accuracy_centralized']:.4f} "
            f"[{base['accuracy_centralized_low']:.4f}, {base['accuracy_centralized_high']:.4f}] "
            f"on {report['num_inputs']} inputs; coded accuracy below, bold is the best per "
            f"column; intervals in {prefix.name}.md.", "",
            f"    {report['command']}", "",
            summary_table(rows),
        ]
    summary_path = args.output_dir / f"decoding_{args.name}_summary.md"
    summary_path.write_text("\n".join(summary))
    print(f"wrote {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
