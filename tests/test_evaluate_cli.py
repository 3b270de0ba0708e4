"""The `approxifer-onnx evaluate` command through click's test runner."""

import csv
import json

import numpy as np
import pytest

from approxifer_onnx.coding import NODE_FAMILIES
from click.testing import CliRunner

from approxifer_onnx_cli.main import main

from .fixtures import QUERY_SHAPE, mlp_classifier_weights, write_mlp_classifier


@pytest.fixture()
def files(tmp_path):
    model = write_mlp_classifier(tmp_path / "model.onnx", hidden=16, num_classes=4)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(60, *QUERY_SHAPE)).astype(np.float32)
    weight1, bias1, weight2, bias2 = mlp_classifier_weights(hidden=16, num_classes=4)
    hidden = np.maximum(inputs.reshape(60, -1) @ weight1 + bias1, 0)
    labels = (hidden @ weight2 + bias2).argmax(axis=1)
    labels[:6] = (labels[:6] + 1) % 4  # six wrong labels: base accuracy 54/60
    data = tmp_path / "data.npz"
    np.savez(data, x_test=inputs, y_test=labels, x_train=inputs[::-1], y_train=labels[::-1])
    return model, data


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_evaluate_writes_table_csv_json_and_chart(files, tmp_path):
    model, data = files
    prefix = tmp_path / "results" / "tiny"

    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:1,3:1:6",
                    "--nodes", "second-kind", "--nodes", "first-kind", "--decoder", "berrut",
                    "--decoder", "floater-hormann:1", "--passes", "2", "--seed", "3",
                    "--output", prefix, "--no-progress")

    assert result.exit_code == 0, result.output
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert report["seed"] == 3
    assert report["passes"] == 2
    assert report["num_inputs"] == 60
    assert "bootstrap over groups" in report["intervals"]
    assert len(report["rows"]) == 2 * 2 * 2
    assert {row["accuracy_centralized"] for row in report["rows"]} == {0.9}
    with prefix.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["decoder"] for row in rows[:2]] == ["berrut", "floater-hormann:1"]
    assert rows[-1]["num_workers"] == "6"
    markdown = prefix.with_suffix(".md").read_text()
    assert "| K | S | N | nodes |" in markdown
    assert prefix.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 4 | 1 | 5 | second-kind | first-k | logits | berrut |" in result.output


def test_evaluate_all_nodes_and_published_column(files, tmp_path):
    model, data = files
    prefix = tmp_path / "all"

    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "8:1",
                    "--nodes", "all", "--wait", "first-k", "--wait", "deadline:0.1",
                    "--decode", "logits", "--decode", "probabilities",
                    "--published", "fashion-mnist", "--output", prefix, "--no-progress")

    assert result.exit_code == 0, result.output
    rows = json.loads(prefix.with_suffix(".json").read_text())["rows"]
    assert len(rows) == len(NODE_FAMILIES) * 2 * 2
    assert {row["nodes"] for row in rows} == set(NODE_FAMILIES)
    published = {(row["wait"], row["published_accuracy"]) for row in rows}
    assert published == {("first-k", 0.74), ("deadline", None)}


def test_evaluate_fit_uses_calibration_split(files, tmp_path):
    model, data = files
    prefix = tmp_path / "fit"

    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:0:4",
                    "--nodes", "fit", "--calibration-size", "20", "--output", prefix,
                    "--no-progress")

    assert result.exit_code == 0, result.output
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert report["calibration"].startswith("20 inputs of")
    assert len(report["rows"]) == 1
    shift = float(report["rows"][0]["nodes"].removeprefix("fitted shift:"))
    assert 0.0 <= shift <= 0.5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grid", "8-1"], "grid item '8-1' is invalid; write K:S or K:S:N"),
        (["--nodes", "chebyshev"], "nodes='chebyshev' is not a node specification"),
        (["--wait", "deadline"], "wait policy 'deadline' is invalid"),
        (["--decoder", "fh:1"], "decoder='fh:1' is not a decoder"),
    ],
)
def test_evaluate_reports_invalid_options(files, tmp_path, extra, message):
    model, data = files

    result = invoke("evaluate", model, "--data", data, "--output", tmp_path / "bad",
                    "--no-progress", *extra)

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_evaluate_needs_labels(tmp_path):
    model = write_mlp_classifier(tmp_path / "model.onnx", num_classes=4)
    data = tmp_path / "unlabeled.npy"
    np.save(data, np.zeros((8, *QUERY_SHAPE), dtype=np.float32))

    result = invoke("evaluate", model, "--data", data, "--grid", "4:1", "--no-progress")

    assert result.exit_code == 1
    assert "has no labels; evaluate needs a labelled data set" in result.output


def test_evaluate_output_with_suffix_names_the_prefix(files, tmp_path):
    model, data = files
    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:1",
                    "--output", tmp_path / "report.md", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").exists()
    assert (tmp_path / "report.json").exists()
    assert not (tmp_path / "report.md.md").exists()
    assert "None" not in (tmp_path / "report.md").read_text()


def test_evaluate_with_privacy_noise_lowers_agreement(files, tmp_path):
    model, data = files
    clean = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:1",
                   "--output", tmp_path / "clean", "--no-progress")
    noisy = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:1",
                   "--dp-epsilon", "0.01", "--dp-bounds", "-5,5", "--dp-seed", "0",
                   "--output", tmp_path / "noisy", "--no-progress")
    assert clean.exit_code == 0, clean.output
    assert noisy.exit_code == 0, noisy.output
    clean_report = json.loads((tmp_path / "clean.json").read_text())
    noisy_report = json.loads((tmp_path / "noisy.json").read_text())
    assert noisy_report["privacy"]["placement"] == "outputs"
    assert noisy_report["privacy"]["epsilon_spent"] > 0
    assert clean_report.get("privacy") is None
    # The base accuracy has no noise; the coded one is drowned in it at epsilon 0.01.
    assert noisy_report["rows"][0]["accuracy_centralized"] == clean_report["rows"][0]["accuracy_centralized"]
    assert noisy_report["rows"][0]["agreement"] < clean_report["rows"][0]["agreement"]


def test_evaluate_locates_simulated_byzantine_workers(files, tmp_path):
    model, data = files
    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:0",
                    "-e", "1", "--simulate-byzantine", "gaussian:100@random:1",
                    "--wait", "deadline:0", "--output", tmp_path / "byz", "--no-progress")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "byz.json").read_text())["rows"][0]
    # The default locator's minimum N for K=4, E=1, S=0 is max(K + E, 2E + 1) = 5.
    assert row["num_workers"] == 5
    assert row["byzantine"] == 1
    assert row["locator"] == "median"
    assert row["attack"] == "gaussian:100@random:1"
    # One wrong worker per group; the locator drops about one result per group.
    assert 0.5 <= row["mean_suspected"] <= 2.0
    table = (tmp_path / "byz.md").read_text()
    assert "| E | locator | attack | dropped per group |" in table
    assert f"| 1 | median | gaussian:100@random:1 | {row['mean_suspected']:.2f} |" in table


def test_evaluate_rejects_too_few_workers(files):
    model, data = files
    result = invoke("evaluate", model, "--data", data, "--no-scale", "--grid", "4:0:5",
                    "-e", "1", "--locator", "subset-search", "--no-progress")
    assert result.exit_code != 0
    assert "needs at least K+2*E+S = 6 workers" in result.output
