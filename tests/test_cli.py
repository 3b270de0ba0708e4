"""The approxifer-onnx command line through click's test runner."""

import csv
import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from approxifer_onnx.data import save_npz
from approxifer_onnx_cli.main import main

from .fixtures import QUERY_SHAPE, linear_classifier_weights, write_linear_classifier

SUMMARY_KEYS = {"accuracy_centralized", "accuracy_coded", "agreement", "k", "num_workers",
                "stragglers", "wait", "num_inputs"}


@pytest.fixture(autouse=True)
def restore_log_levels():
    # The -v/-q flags set the package loggers' levels, which would leak into later tests.
    loggers = [logging.getLogger(name) for name in ("approxifer_onnx", "model_zoo")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.fixture()
def files(tmp_path):
    model = write_linear_classifier(tmp_path / "model.onnx", num_classes=3)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(40, *QUERY_SHAPE)).astype(np.float32)
    weight, bias = linear_classifier_weights(num_classes=3)
    labels = (inputs.reshape(40, -1) @ weight + bias).argmax(axis=1)
    labels[:4] = (labels[:4] + 1) % 3  # four wrong labels: centralized accuracy is 36/40
    data = tmp_path / "data.npz"
    np.savez(data, x=inputs, y=labels)
    return model, data


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_wrap_reports_accuracy_and_writes_files(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "out" / "summary.json"
    predictions_path = tmp_path / "predictions.csv"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 0, "-n", 8,
                    "--wait", "deadline", "--nodes", "second-kind-open", "--no-progress",
                    "--output", predictions_path, "--summary-json", summary_path)

    assert result.exit_code == 0, result.output
    assert "centralized 0.9000" in result.output
    summary = json.loads(summary_path.read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["accuracy_centralized"] == pytest.approx(0.9)
    # N = 2K with these nodes decodes exactly, so coded equals centralized.
    assert summary["accuracy_coded"] == pytest.approx(0.9)
    assert summary["agreement"] == 1.0
    assert summary["num_inputs"] == 40
    assert summary["num_workers"] == 8
    rows = list(csv.DictReader(predictions_path.open()))
    assert len(rows) == 40
    assert set(rows[0]) == {"index", "prediction_coded", "prediction_centralized", "label"}


def test_wrap_with_simulated_stragglers_counts_them(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "summary.json"
    predictions_path = tmp_path / "predictions.jsonl"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 1, "--batch-size", 8,
                    "--simulate-stragglers", "count=1;delay=hang", "--seed", 3, "--no-progress",
                    "--summary-json", summary_path, "--output", predictions_path)

    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["calls"] == 5
    assert summary["calls_with_stragglers"] == 5
    assert summary["late_workers_total"] + summary["failed_workers_total"] == 5
    assert summary["latency_p99_ms"] >= summary["latency_p50_ms"] > 0
    lines = predictions_path.read_text().splitlines()
    assert len(lines) == 40
    assert set(json.loads(lines[0])) == {"index", "prediction_coded", "prediction_centralized",
                                         "label"}


def test_wrap_without_labels_reports_agreement_only(files, tmp_path):
    model, _ = files
    data = tmp_path / "unlabelled.npy"
    np.save(data, np.zeros((6, *QUERY_SHAPE), np.float32))
    result = invoke("wrap", model, "--data", data, "-k", 2, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "accuracy" not in result.output
    assert "agreement" in result.output


@pytest.mark.parametrize(("extra", "message"), [
    (["-k", "8", "-s", "2", "-n", "9"], "needs at least K+S = 10 workers, got num_workers=9"),
    (["--simulate-stragglers", "often"], "often"),
    (["--output", "predictions.txt"], "use one of .jsonl, .csv"),
    (["--wait", "all"], "'all' is not one of 'first-k', 'deadline'"),
])
def test_wrap_user_errors_print_one_line(files, extra, message):
    model, data = files
    result = invoke("wrap", model, "--data", data, "--no-progress", *extra)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_wrap_rejects_integer_input_model(tmp_path):
    from .fixtures import write_integer_input_model

    model = write_integer_input_model(tmp_path / "int.onnx")
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((2, *QUERY_SHAPE), np.float32))
    result = invoke("wrap", model, "--data", data, "--no-progress")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "integer" in result.output.lower() or "int" in result.output.lower()
    assert len(result.output.strip().splitlines()) == 1


def test_missing_model_file_is_reported(tmp_path):
    result = invoke("wrap", tmp_path / "absent.onnx")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_verbose_flag_logs_session_start(files, caplog):
    model, data = files
    result = CliRunner().invoke(main, ["-v", "wrap", str(model), "--data", str(data), "-k", "4",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "coded session ready" in caplog.text


def test_quiet_flag_hides_info_logs(files, caplog):
    model, data = files
    result = CliRunner().invoke(main, ["-q", "wrap", str(model), "--data", str(data), "-k", "4",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "coded session ready" not in caplog.text
    assert logging.getLogger("approxifer_onnx").level == logging.ERROR


def test_wrap_drops_simulated_byzantine_worker(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "summary.json"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 0, "-e", 1,
                    "--locator", "subset-search", "--wait", "deadline",
                    "--locator-tolerance", "1e-3", "--simulate-byzantine", "gaussian:100@2",
                    "--no-progress", "--summary-json", summary_path)

    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["num_workers"] == 4 + 2
    assert summary["byzantine"] == 1
    assert summary["locator"] == "subset-search"
    # 40 inputs in groups of 4: the wrong worker is dropped from each of the 10 groups.
    assert summary["suspected_results_total"] == 10
    assert "dropped as wrong" in result.output


def test_wrap_default_locator_drops_wrong_worker(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "summary.json"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 0, "-e", 1, "--wait",
                    "deadline", "--simulate-byzantine", "gaussian:100@2", "--no-progress",
                    "--summary-json", summary_path)

    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    # The median locator needs max(K + E, 2E + 1) = 5 results and no calibrated tolerance.
    assert summary["locator"] == "median"
    assert summary["num_workers"] == 5
    assert summary["suspected_results_total"] == 10


def test_wrap_calibrates_locator(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "summary.json"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 0, "-e", 1, "-n", 7,
                    "--calibrate-locator", 16, "--simulate-byzantine", "gaussian:100@random:1",
                    "--no-progress", "--summary-json", summary_path)

    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["num_inputs"] == 40 - 16
    assert summary["locator_tolerance"] > 0
    assert summary["suspected_results_total"] == 6  # one wrong worker in each of 6 groups
    assert "tolerance" in result.output


@pytest.mark.parametrize(("arguments", "message"), [
    (["--calibrate-locator", 8], "needs -e/--byzantine E > 0"),
    (["-e", 1, "--calibrate-locator", 40], "40 held-out inputs leave none of the 40 to serve"),
])
def test_wrap_rejects_bad_calibration(files, arguments, message):
    model, data = files
    result = invoke("wrap", model, "--data", data, "-k", 4, "--no-progress", *arguments)
    assert result.exit_code != 0
    assert message in result.output


def test_wrap_with_privacy_reports_epsilon_spent(files, tmp_path):
    model, data = files
    summary_path = tmp_path / "summary.json"

    result = invoke("wrap", model, "--data", data, "-k", 4, "-s", 1, "--batch-size", 40,
                    "--dp-epsilon", 2, "--dp-bounds", "-20,20", "--dp-seed", 0, "--no-progress",
                    "--summary-json", summary_path)

    assert result.exit_code == 0, result.output
    privacy = json.loads(summary_path.read_text())["privacy"]
    assert privacy["placement"] == "outputs"
    # One call of 10 groups sent to 5 workers: 50 released vectors at epsilon 2.
    assert privacy["epsilon_spent"] == pytest.approx(100.0)
    assert "epsilon 2 per released vector" in result.output


def test_wrap_resizes_and_converts_images(tmp_path):
    from PIL import Image

    model = write_linear_classifier(tmp_path / "model.onnx", num_classes=3)
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (9, 7), color=(10 * index, 20, 30)).save(folder / f"{index}.png")
    result = invoke("wrap", model, "--data", folder, "--size", 4, 4, "--channels", 1,
                    "-k", 2, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "(3 inputs)" in result.output


def test_serve_without_extra_names_the_install(tmp_path, monkeypatch):
    import sys

    model = write_linear_classifier(tmp_path / "model.onnx", num_classes=3)
    for name in list(sys.modules):
        if name.startswith("approxifer_onnx.serving"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    result = invoke("serve", model, "--port", 0)
    assert result.exit_code == 1
    assert "pip install 'approxifer-onnx[serve]'" in result.output
    assert "Traceback" not in result.output
