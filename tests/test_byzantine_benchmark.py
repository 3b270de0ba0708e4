"""The Byzantine benchmark on a real (tiny) model: the digits MLP export and one short run."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from approxifer_onnx.model import OnnxModel

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "byzantine.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("byzantine_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_mlp_export_classifies(benchmark, tmp_path):
    path = tmp_path / "mlp.onnx"

    images, labels = benchmark.export_digits_mlp(path, seed=0)
    model = OnnxModel(path)
    logits = model.predict(images, [model.outputs[0].name])[0]

    assert images.shape == (797, 64)
    assert logits.shape == (797, 10)
    assert np.mean(logits.argmax(axis=1) == labels) > 0.9


def test_short_run_writes_results(benchmark, tmp_path):
    argv = [
        "--digits", "--name", "tiny", "--limit", "120", "--calibration", "120", "-k", "4",
        "--byzantine", "1", "--locators", "subset-search,median", "--more-locators",
        "subset-search", "--more-attacks", "sign-flip", "--extra-workers", "0",
        "--trials-per-group", "2", "--output-dir", str(tmp_path),
    ]

    assert benchmark.main(argv) == 0

    with open(tmp_path / "byzantine-tiny.csv") as handle:
        rows = list(csv.DictReader(handle))
    # N runs from K + E + 1 = 6 to ApproxIFER's 2K + 2E - 1 = 9.
    assert sorted({int(row["num_workers"]) for row in rows}) == [6, 7, 8, 9]
    assert {(row["locator"], row["attack"]) for row in rows} == {
        ("subset-search", "gaussian:10"), ("subset-search", "sign-flip"),
        ("median", "gaussian:10"),
    }
    assert all(int(row["trials"]) == 60 for row in rows)  # 30 groups, 2 draws each
    for row in rows:
        assert 0.0 <= float(row["location_success"]) <= 1.0
        assert 0.0 < float(row["accuracy_no_attack"]) <= 1.0
    summary = json.loads((tmp_path / "byzantine-tiny.json").read_text())["summary"]
    assert len(summary) == 3
    assert (tmp_path / "byzantine-tiny.png").stat().st_size > 0
    assert (tmp_path / "byzantine-tiny-accuracy.png").stat().st_size > 0
    # The default nodes keep the raw queries up to N = 3K.
    assert {row["node_family"] for row in rows} == {"paired"}
    for entry in summary:
        both = entry["smallest_num_workers_both"]
        if both is not None:
            row = next(r for r in rows if (r["locator"], r["attack"], int(r["num_workers"]))
                       == (entry["locator"], entry["attack"], both))
            assert float(row["location_success"]) >= 0.99
            assert float(row["accuracy_no_attack"]) - float(row["accuracy_attacked"]) <= 0.02
