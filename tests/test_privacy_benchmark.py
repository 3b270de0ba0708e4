"""Tests of benchmarks/privacy_epsilon.py on a tiny ONNX classifier and a small labelled array."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import write_mlp_classifier

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "privacy_epsilon.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("privacy_epsilon", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def files(tmp_path):
    model = write_mlp_classifier(tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", images=images, labels=rng.integers(0, 10, size=120))
    return model, tmp_path / "data.npz", tmp_path / "results"


def test_benchmark_writes_every_row(benchmark, files):
    model, data, output_dir = files
    status = benchmark.main(["--model", str(model), "--data", str(data), "--name", "tiny",
                             "--epsilons", "0.5", "1e9", "--output-dir", str(output_dir)])
    assert status == 0
    report = json.loads((output_dir / "privacy_epsilon_tiny.json").read_text())
    settings = [(row["placement"], row["epsilon"]) for row in report["rows"]]
    assert settings == [("none", None),
                        ("outputs", None), ("outputs", 0.5), ("outputs", 1e9),
                        ("queries", None), ("queries", 0.5), ("queries", 1e9)]
    rows = {setting: row for setting, row in zip(settings, report["rows"])}

    # noise of scale 200 / 1e9 on logits (C = 10, bounds [-10, 10]) changes no argmax, so the
    # accuracy equals that of clipping alone
    assert rows[("outputs", 1e9)]["accuracy_coded"] == rows[("outputs", None)]["accuracy_coded"]
    assert rows[("outputs", 0.5)]["noise_scale_per_value"] == pytest.approx(400.0, rel=1e-3)
    # d = 16 pixels in [0, 1]: scale 16 / 0.5 = 32 per pixel
    assert rows[("queries", 0.5)]["noise_scale_per_value"] == pytest.approx(32.0, rel=1e-3)
    assert rows[("queries", 0.5)]["epsilon_per_query_all_workers"] == pytest.approx(9 * 0.5)
    # the tiny model's logits stay inside the default bounds, so clipping them changes nothing
    assert report["clipped_logit_share"] == 0.0
    assert rows[("outputs", None)]["agreement"] == rows[("none", None)]["agreement"]

    with (output_dir / "privacy_epsilon_tiny.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 7
    assert (output_dir / "privacy_epsilon_tiny.png").stat().st_size > 0
    assert "| outputs | clipping only |" in (output_dir / "privacy_epsilon_tiny.md").read_text()


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ("1;2", "expected LOW,HIGH such as -10,10, got '1;2'"),
        ("5,1", "lower must be less than upper, got lower=5.0 and upper=1.0"),
    ],
)
def test_benchmark_rejects_bad_bounds(benchmark, bounds, message, capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args([f"--logit-bounds={bounds}"])
    assert message in capsys.readouterr().err
