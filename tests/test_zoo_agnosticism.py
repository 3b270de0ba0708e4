"""The agnosticism benchmark end to end on a tiny zoo model trained for seconds."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from click.testing import CliRunner  # noqa: E402

from model_zoo import registry  # noqa: E402

pytestmark = pytest.mark.zoo

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "agnosticism.py"
TINY = registry.ZooEntry(name="tiny-resnet", source="timm", arch="test_resnet",
                         input_size=(1, 8, 8))


@pytest.fixture(scope="module")
def agnosticism():
    spec = importlib.util.spec_from_file_location("agnosticism_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_registry(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(TINY)
    monkeypatch.setenv("APPROXIFER_CACHE_DIR", str(tmp_path / "cache"))


def test_benchmark_tabulates_each_setting(agnosticism, tiny_registry, tmp_path):
    results = tmp_path / "results" / "agnosticism"
    arguments = ["--models", "tiny-resnet", "--dataset", "digits", "--epochs", "2",
                 "--threads", "1", "--grid", "4:1,6:2", "--results-dir", str(results)]
    outcome = CliRunner().invoke(agnosticism.main, arguments)
    assert outcome.exit_code == 0, outcome.output

    # The model lives in the benchmark's own cache folder, not in zoo build's default place.
    model_path = tmp_path / "cache" / "zoo" / "agnosticism" / "tiny-resnet-digits" / "model.onnx"
    assert model_path.is_file()
    manifest = json.loads((results / "tiny-resnet-digits" / "manifest.json").read_text())
    report = json.loads((results / "tiny-resnet-digits" / "evaluation.json").read_text())
    assert manifest["epochs"] == 2
    assert "--nodes second-kind-open --nodes systematic" in report["command"]

    with open(tmp_path / "results" / "agnosticism.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Two settings times two node choices, each row copied from the evaluation report.
    assert len(rows) == 4
    assert {(row["k"], row["stragglers"], row["nodes"]) for row in rows} == {
        ("4", "1", "second-kind-open"), ("4", "1", "systematic"),
        ("6", "2", "second-kind-open"), ("6", "2", "systematic"),
    }
    for row, expected in zip(rows, report["rows"]):
        assert float(row["accuracy_coded"]) == pytest.approx(expected["accuracy_coded"], abs=5e-5)
        assert float(row["accuracy_base"]) == pytest.approx(manifest["test_accuracy"], abs=5e-5)
        assert row["published_resnet18"] == ""
    table = (tmp_path / "results" / "agnosticism.md").read_text()
    assert table.count("| tiny-resnet | digits | 2 |") == 2
    for nodes in ("second-kind-open", "systematic"):
        image = tmp_path / "results" / f"agnosticism_{nodes}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_rejects_unknown_model(agnosticism, tmp_path):
    outcome = CliRunner().invoke(agnosticism.main, ["--models", "resnet81",
                                                    "--results-dir", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "unknown zoo models ['resnet81']" in outcome.output


def summary_row(model: str, k: int, stragglers: int, published) -> dict:
    """One collected row with the fields that the Markdown summary reads."""
    return {"model": model, "dataset": "fashion-mnist", "nodes": "second-kind-open",
            "epochs": 1, "test_accuracy_full": 0.9, "accuracy_base": 0.9, "k": k,
            "stragglers": stragglers, "accuracy_coded": 0.8, "accuracy_coded_low": 0.79,
            "accuracy_coded_high": 0.81, "published_resnet18": published}


def test_summary_adds_paper_line_for_resnet18(agnosticism):
    published = agnosticism.PUBLISHED_RESNET18["fashion-mnist"]
    rows = [summary_row("resnet18", 8, 1, published[(8, 1)]),
            summary_row("resnet18", 8, 3, published[(8, 3)]),
            summary_row("convnext_atto", 8, 1, None)]
    lines = agnosticism.markdown_summary(rows).splitlines()
    assert lines[0].endswith("| K=8 S=1 | K=8 S=3 |")
    assert lines[2].startswith("| resnet18 | fashion-mnist | 1 | 0.900 | 0.900 |")
    assert lines[3].endswith("| 0.800 [0.790, 0.810] |  |")
    assert lines[4] == "| paper: ApproxIFER ResNet-18 | Fashion-MNIST |  |  |  |  | 0.740 | 0.640 |"
    assert len(lines) == 5
